//! Installation: `cargo cinstall --release --prefix <prefix>` (cargo-c, configured by
//! `[package.metadata.capi]` in Cargo.toml) into `target/cinstall/prefix`, then
//! - the installed files: libeplb.so, libeplb.a, include/eplb/eplb.h and eplb.hpp (identical to
//!   the committed ones), eplb.pc with the static link flags, the CMake package;
//! - `examples/cmake` configured with `-DCMAKE_PREFIX_PATH=<prefix>`, built and run (the C++
//!   wrapper against `eplb::eplb`, the C API against `eplb::eplb_static`);
//! - `examples/c/example.c` built with `pkg-config --cflags --libs eplb` and run, dynamically and
//!   statically (`pkg-config --static`).
//!
//! cargo-c builds into its own target dir (`target/cinstall`) so that it never waits on the lock
//! of the `cargo test` that runs this. Missing tools (cargo-c, cmake, pkg-config, a C compiler)
//! print a skip message; `bash scripts/setup.sh` installs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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

fn text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`, panicking with its output when it fails.
fn check(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {cmd:?}\n{}",
        text(&out)
    );
    out
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn works(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// The tools this file needs, or the reason to skip.
fn missing_tool() -> Option<&'static str> {
    if !works(cargo().args(["cinstall", "--version"])) {
        return Some("cargo-c (cargo cinstall)");
    }
    if !works(Command::new("cmake").arg("--version")) {
        return Some("cmake");
    }
    if !works(Command::new("pkg-config").arg("--version")) {
        return Some("pkg-config");
    }
    if !works(Command::new(cc()).arg("--version")) {
        return Some("a C compiler (cc)");
    }
    None
}

/// Whether Cargo.toml's `[features]` table has a `capi` entry (cargo-c's marker).
fn declares_capi_feature() -> bool {
    let manifest =
        std::fs::read_to_string(manifest_dir().join("Cargo.toml")).expect("read Cargo.toml");
    let mut in_features = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_features = line == "[features]";
        } else if in_features && line.split('=').next().map(str::trim) == Some("capi") {
            return true;
        }
    }
    false
}

struct Install {
    prefix: PathBuf,
    /// Where cargo-c put the libraries: `lib`, or `lib/<triplet>` on Debian-like systems.
    libdir: PathBuf,
    pkgconfig: PathBuf,
}

/// Installs once per test process; None when a tool is missing.
fn install() -> Option<&'static Install> {
    static INSTALL: OnceLock<Option<Install>> = OnceLock::new();
    INSTALL
        .get_or_init(|| {
            if let Some(tool) = missing_tool() {
                eprintln!(
                    "SKIPPED install tests: {tool} not found (bash scripts/setup.sh installs it)"
                );
                return None;
            }
            let build = target_dir().join("cinstall");
            let prefix = build.join("prefix");
            if prefix.exists() {
                std::fs::remove_dir_all(&prefix).expect("remove the old prefix");
            }
            assert!(
                declares_capi_feature(),
                "cargo-c only builds packages that declare a `capi` feature: Cargo.toml needs \
                 `capi = []` under [features] for `cargo cinstall` to install anything"
            );
            check(
                cargo()
                    .current_dir(manifest_dir())
                    .args(["cinstall", "--release", "--prefix"])
                    .arg(&prefix)
                    .env("CARGO_TARGET_DIR", &build)
                    .env_remove("RUSTFLAGS"),
                "cargo cinstall",
            );
            let libdir = [
                prefix.join("lib").join("x86_64-linux-gnu"),
                prefix.join("lib"),
            ]
            .into_iter()
            .chain(
                std::fs::read_dir(prefix.join("lib"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            )
            .find(|d| d.join("libeplb.so").exists())
            .unwrap_or_else(|| panic!("no libeplb.so under {}", prefix.display()));
            let pkgconfig = libdir.join("pkgconfig");
            Some(Install {
                prefix,
                libdir,
                pkgconfig,
            })
        })
        .as_ref()
}

#[test]
fn installs_libraries_headers_pkg_config_and_cmake_package() {
    let Some(inst) = install() else { return };
    for lib in ["libeplb.so", "libeplb.a"] {
        assert!(inst.libdir.join(lib).exists(), "{lib} not installed");
    }
    for header in ["eplb.h", "eplb.hpp"] {
        let installed = std::fs::read(inst.prefix.join("include/eplb").join(header))
            .unwrap_or_else(|e| panic!("include/eplb/{header}: {e}"));
        let committed = std::fs::read(manifest_dir().join("include").join(header)).unwrap();
        assert!(
            installed == committed,
            "installed {header} differs from include/{header}"
        );
    }
    for file in ["eplbConfig.cmake", "eplbConfigVersion.cmake"] {
        let path = inst.prefix.join("share/eplb/cmake").join(file);
        assert!(path.exists(), "{} not installed", path.display());
    }
    let pc = std::fs::read_to_string(inst.pkgconfig.join("eplb.pc")).expect("eplb.pc");
    let private = pc
        .lines()
        .find(|l| l.starts_with("Libs.private:"))
        .unwrap_or_else(|| panic!("eplb.pc has no Libs.private:\n{pc}"));
    for flag in ["-lpthread", "-ldl", "-lm"] {
        assert!(private.contains(flag), "Libs.private lacks {flag}:\n{pc}");
    }
    let version = format!("Version: {}", env!("CARGO_PKG_VERSION"));
    assert!(pc.contains(&version), "eplb.pc lacks `{version}`:\n{pc}");
}

#[test]
fn cmake_find_package_links_shared_and_static() {
    let Some(inst) = install() else { return };
    let build = target_dir().join("cinstall").join("cmake-build");
    if build.exists() {
        std::fs::remove_dir_all(&build).expect("remove the old cmake build");
    }
    check(
        Command::new("cmake")
            .arg("-S")
            .arg(manifest_dir().join("examples/cmake"))
            .arg("-B")
            .arg(&build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", inst.prefix.display()))
            .arg("-DCMAKE_BUILD_TYPE=Release"),
        "cmake configure",
    );
    check(
        Command::new("cmake").arg("--build").arg(&build),
        "cmake build",
    );
    // No LD_LIBRARY_PATH: CMake's build-tree rpath finds libeplb.so; plan_static needs none.
    for exe in ["plan_shared", "plan_static"] {
        let out = check(
            Command::new(build.join(exe)).env_remove("LD_LIBRARY_PATH"),
            exe,
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("phy2log"),
            "{exe}:\n{}",
            text(&out)
        );
    }
}

fn pkg_config(inst: &Install, args: &[&str]) -> Vec<String> {
    let out = check(
        Command::new("pkg-config")
            .args(args)
            .arg("eplb")
            .env("PKG_CONFIG_PATH", &inst.pkgconfig),
        "pkg-config",
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn pkg_config_builds_the_c_example_shared_and_static() {
    let Some(inst) = install() else { return };
    let dir = target_dir().join("cinstall").join("pkg-config");
    std::fs::create_dir_all(&dir).unwrap();
    let src = manifest_dir().join("examples/c/example.c");
    let strict = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"];

    // Shared: cc example.c $(pkg-config --cflags --libs eplb), run with LD_LIBRARY_PATH.
    let shared = dir.join("example_shared");
    check(
        Command::new(cc())
            .args(strict)
            .arg(&src)
            .args(pkg_config(inst, &["--cflags", "--libs"]))
            .arg("-o")
            .arg(&shared),
        "cc with pkg-config --libs",
    );
    let out = check(
        Command::new(&shared).env("LD_LIBRARY_PATH", &inst.libdir),
        "example (pkg-config, shared)",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all checks passed"));

    // Static: pkg-config --static adds Libs.private; -l:libeplb.a makes the linker take the archive
    // although libeplb.so sits next to it. The program then runs without LD_LIBRARY_PATH.
    let static_flags: Vec<String> = pkg_config(inst, &["--static", "--cflags", "--libs"])
        .into_iter()
        .map(|f| {
            if f == "-leplb" {
                "-l:libeplb.a".into()
            } else {
                f
            }
        })
        .collect();
    assert!(
        static_flags.iter().any(|f| f == "-lpthread"),
        "pkg-config --static lacks the private libraries: {static_flags:?}"
    );
    let fully = dir.join("example_static");
    check(
        Command::new(cc())
            .args(strict)
            .arg(&src)
            .args(&static_flags)
            .arg("-o")
            .arg(&fully),
        "cc with pkg-config --static --libs",
    );
    let out = check(
        Command::new(&fully).env_remove("LD_LIBRARY_PATH"),
        "example (pkg-config, static)",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all checks passed"));
}

/// The README's C, C++ and CMake snippets are the files these tests build, verbatim.
#[test]
fn readme_snippets_are_the_tested_files() {
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).expect("README.md");
    let start = readme
        .find("<!-- usage-native:start -->")
        .expect("usage-native:start marker");
    let end = readme
        .find("<!-- usage-native:end -->")
        .expect("usage-native:end marker");
    let section = &readme[start..end];
    for file in ["main.c", "main.cpp", "CMakeLists.txt"] {
        let body = std::fs::read_to_string(manifest_dir().join("examples/cmake").join(file))
            .unwrap_or_else(|e| panic!("examples/cmake/{file}: {e}"));
        assert!(
            section.contains(&body),
            "README's usage-native section no longer shows examples/cmake/{file} verbatim"
        );
    }
}
