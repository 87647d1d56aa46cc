//! The C and C++ callers: compiles `examples/c/example.c`, `examples/cpp/example.cpp` and
//! `examples/cpp/wrapper_example.cpp` with `-Wall -Wextra -Werror -pedantic` against the built
//! `libeplb.so` and `libeplb.a`, runs them and checks their exit status; runs them again built with
//! AddressSanitizer + UndefinedBehaviorSanitizer (static library) and under valgrind (shared
//! library); checks that `include/eplb.h` compiles as C99 and C++17 and that both headers can be
//! included twice.
//!
//! The libraries come from the profile directory of this test binary: `target/<profile>/deps/`,
//! where `cargo test` builds them because the crate declares the `cdylib` and `staticlib` crate
//! types, else `target/<profile>/` (`cargo build`). When both lack them, the test builds them with
//! `cargo build --lib` into `target/c-callers`.
//! A missing tool (C/C++ compiler, sanitizer runtime, valgrind) prints a skip message; run
//! `scripts/setup.sh` to install them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// `rustc --print native-static-libs` for the staticlib on Linux.
const STATIC_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];
const WARNINGS: &[&str] = &["-Wall", "-Wextra", "-Werror", "-pedantic"];
const SANITIZE: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=all",
    "-g",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Lang {
    C,
    Cpp,
}

#[derive(Clone, Copy, Debug)]
enum Link {
    Shared,
    Static,
}

const EXAMPLES: &[(&str, Lang)] = &[
    ("examples/c/example.c", Lang::C),
    ("examples/cpp/example.cpp", Lang::Cpp),
    ("examples/cpp/wrapper_example.cpp", Lang::Cpp),
];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>` of this test binary (`target/<profile>/deps/c_callers-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The target dir this test binary was built in (`<target>/<profile>/deps/<test>`), whether it
/// comes from `CARGO_TARGET_DIR`, `build.target-dir` or the default `target/`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// The directory holding `libeplb.so` and `libeplb.a`, built once per test process.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // `cargo test` builds the cdylib and staticlib next to the rlib it links the tests
        // against, in target/<profile>/deps (fresh); `cargo build` copies them up a level.
        let dir = profile_dir();
        for candidate in [dir.join("deps"), dir.clone()] {
            if candidate.join("libeplb.so").is_file() && candidate.join("libeplb.a").is_file() {
                return candidate;
            }
        }
        // Not produced by this `cargo test` (unusual): build them into a separate target dir so
        // that the outer cargo's lock on the main one cannot deadlock us.
        let release = dir.file_name().is_some_and(|n| n == "release");
        let own = target_dir().join("c-callers");
        eprintln!(
            "c_callers: {} lacks libeplb.so/libeplb.a; building them into {}",
            dir.display(),
            own.display()
        );
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(manifest_dir())
            .args(["build", "--lib"])
            .env("CARGO_TARGET_DIR", &own);
        if release {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build --lib failed:\n{}",
            text(&out)
        );
        own.join(if release { "release" } else { "debug" })
    })
}

/// A scratch directory for this test's binaries.
fn work_dir(name: &str) -> PathBuf {
    let dir = profile_dir().join("c-callers").join(name);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn compiler(lang: Lang) -> String {
    match lang {
        Lang::C => std::env::var("CC").unwrap_or_else(|_| "cc".into()),
        Lang::Cpp => std::env::var("CXX").unwrap_or_else(|_| "c++".into()),
    }
}

fn std_flag(lang: Lang) -> &'static str {
    match lang {
        Lang::C => "-std=c99",
        Lang::Cpp => "-std=c++17",
    }
}

/// True when `program --version` runs; otherwise prints why the caller skips.
fn have(program: &str, why: &str) -> bool {
    let ok = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED {why}: `{program}` not found (bash scripts/setup.sh installs it)");
    }
    ok
}

/// Compiles one example into `out`; panics with the compiler output on failure.
fn compile(src: &str, lang: Lang, link: Link, extra: &[&str], out: &Path) {
    let lib = lib_dir();
    let mut cmd = Command::new(compiler(lang));
    cmd.arg(std_flag(lang))
        .args(WARNINGS)
        .args(extra)
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg(manifest_dir().join(src))
        .arg("-o")
        .arg(out);
    match link {
        Link::Shared => {
            cmd.arg("-L").arg(lib).arg("-leplb");
        }
        Link::Static => {
            cmd.arg(lib.join("libeplb.a")).args(STATIC_LIBS);
        }
    }
    let res = cmd.output().expect("run the compiler");
    assert!(
        res.status.success(),
        "compiling {src} ({link:?}) failed: {cmd:?}\n{}",
        text(&res)
    );
}

/// Runs a built example (with LD_LIBRARY_PATH at the library) and returns its output.
fn run(prefix: &[&str], exe: &Path) -> Output {
    let (program, args) = match prefix.split_first() {
        Some((p, rest)) => (
            PathBuf::from(p),
            [rest, &[exe.to_str().expect("utf-8 path")]].concat(),
        ),
        None => (exe.to_path_buf(), Vec::new()),
    };
    Command::new(program)
        .args(args)
        .env("LD_LIBRARY_PATH", lib_dir())
        .output()
        .expect("run the example")
}

fn exe_name(src: &str) -> String {
    Path::new(src)
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("file stem")
        .to_string()
}

/// Builds every example (with `-g`) against one library, once per test process; None for an
/// example whose compiler is missing. The valgrind test reuses the shared builds.
fn built(link: Link) -> &'static [(&'static str, Option<PathBuf>)] {
    static SHARED: OnceLock<Vec<(&str, Option<PathBuf>)>> = OnceLock::new();
    static STATIC: OnceLock<Vec<(&str, Option<PathBuf>)>> = OnceLock::new();
    let cell = match link {
        Link::Shared => &SHARED,
        Link::Static => &STATIC,
    };
    cell.get_or_init(|| {
        let dir = work_dir(&format!("{link:?}").to_lowercase());
        EXAMPLES
            .iter()
            .map(|&(src, lang)| {
                if !have(&compiler(lang), &format!("{src} ({link:?})")) {
                    return (src, None);
                }
                let exe = dir.join(exe_name(src));
                compile(src, lang, link, &["-g"], &exe);
                (src, Some(exe))
            })
            .collect()
    })
}

fn build_and_run_all(link: Link) {
    for (src, exe) in built(link) {
        let Some(exe) = exe else { continue };
        let out = run(&[], exe);
        assert!(
            out.status.success(),
            "{src} ({link:?}) failed:\n{}",
            text(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("all checks passed"), "{src}: {stdout}");
    }
}

#[test]
fn examples_against_shared_library() {
    build_and_run_all(Link::Shared);
}

#[test]
fn examples_against_static_library() {
    build_and_run_all(Link::Static);
}

/// The sanitizer runtime links on this machine (gcc without libasan/libubsan would fail here).
fn sanitizers_available(lang: Lang) -> bool {
    let dir = work_dir("sanitize-probe");
    let src = dir.join(if lang == Lang::C {
        "probe.c"
    } else {
        "probe.cpp"
    });
    std::fs::write(&src, "int main(void) { return 0; }\n").expect("write probe");
    let ok = Command::new(compiler(lang))
        .args(SANITIZE)
        .arg(&src)
        .arg("-o")
        .arg(dir.join(format!("probe-{lang:?}")))
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED sanitizers ({lang:?}): the compiler cannot link -fsanitize=address,undefined"
        );
    }
    ok
}

#[test]
fn examples_under_address_and_ub_sanitizers() {
    let dir = work_dir("sanitize");
    for &(src, lang) in EXAMPLES {
        if !have(&compiler(lang), &format!("{src} (sanitizers)")) || !sanitizers_available(lang) {
            continue;
        }
        let exe = dir.join(exe_name(src));
        compile(src, lang, Link::Static, SANITIZE, &exe);
        let out = Command::new(&exe)
            .env(
                "ASAN_OPTIONS",
                "detect_leaks=1:abort_on_error=0:exitcode=99",
            )
            .env(
                "UBSAN_OPTIONS",
                "print_stacktrace=1:halt_on_error=1:exitcode=98",
            )
            .output()
            .expect("run the sanitized example");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success()
                && !stderr.contains("Sanitizer")
                && !stderr.contains("runtime error"),
            "{src} under ASan/UBSan:\n{}",
            text(&out)
        );
    }
}

#[test]
fn examples_under_valgrind() {
    if !have("valgrind", "valgrind run") {
        return;
    }
    for (src, exe) in built(Link::Shared) {
        let Some(exe) = exe else { continue };
        let out = run(
            &[
                "valgrind",
                "--quiet",
                "--error-exitcode=1",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
            ],
            exe,
        );
        assert!(
            out.status.success(),
            "{src} under valgrind:\n{}",
            text(&out)
        );
    }
}

/// Compiles `body` (which includes the headers) with `-fsyntax-only` and the strict warnings.
fn syntax_check(lang: Lang, std: &str, name: &str, body: &str) {
    let dir = work_dir("headers");
    let src = dir.join(name);
    std::fs::write(&src, body).expect("write source");
    let out = Command::new(compiler(lang))
        .arg(std)
        .args(WARNINGS)
        .arg("-Wconversion")
        .arg("-fsyntax-only")
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg(&src)
        .output()
        .expect("run the compiler");
    assert!(
        out.status.success(),
        "{name} ({std}):\n{body}\n{}",
        text(&out)
    );
}

#[test]
fn headers_compile_strictly_and_include_twice() {
    const C_BODY: &str = "#include \"eplb.h\"\n#include \"eplb.h\"\n\
        int main(void) { eplb_options o; eplb_options_init(&o); \
        return (int)o.algorithm + (eplb_version() == 0); }\n";
    const CPP_BODY: &str = "#include \"eplb.hpp\"\n#include \"eplb.hpp\"\n#include \"eplb.h\"\n\
        int main() { eplb::Options o; return static_cast<int>(o.algorithm()) \
        + (eplb::version() == nullptr); }\n";
    if have(&compiler(Lang::C), "C99 header check") {
        syntax_check(Lang::C, "-std=c99", "twice.c", C_BODY);
    }
    if have(&compiler(Lang::Cpp), "C++17 header check") {
        syntax_check(Lang::Cpp, "-std=c++17", "twice_c.cpp", C_BODY);
        syntax_check(Lang::Cpp, "-std=c++17", "twice_hpp.cpp", CPP_BODY);
    }
}
