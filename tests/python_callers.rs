//! Python callers of the C API, run against the library this `cargo test` built:
//! - `examples/python/example.py` (ctypes, standard library only);
//! - the `eplb` package's unittest suite (`python/tests`, with `PYTHONPATH=python`);
//! - `pip install ./python` into a fresh virtual environment (the wheel build runs cargo in a
//!   separate target directory, `target/python-wheel`), then `import eplb` from outside the
//!   repository without `EPLB_LIBRARY`.
//!
//! Needs `python3` (or `$EPLB_PYTHON`) with NumPy: `scripts/setup.sh` installs it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const README_WEIGHT: &str = "[[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86], \
                             [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]";

fn python() -> String {
    std::env::var("EPLB_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// `target/<profile>`: the test binary is `target/<profile>/deps/<name>-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

fn library_name() -> String {
    format!(
        "{}eplb{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The shared library of this build: the newer of `target/<profile>/libeplb.so` (what `cargo
/// build` leaves) and `target/<profile>/deps/libeplb.so` (what `cargo test` itself compiles but
/// does not copy up, so the former can be stale or missing). When neither exists, runs `cargo
/// build --lib` for the profile; cargo releases its lock on the target directory before it runs
/// the tests, so that does not block.
fn library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let dir = profile_dir();
        let uplifted = dir.join(library_name());
        let newest = [uplifted.clone(), dir.join("deps").join(library_name())]
            .into_iter()
            .filter_map(|path| Some((path.metadata().ok()?.modified().ok()?, path)))
            .max_by_key(|(modified, _)| *modified);
        if let Some((_, path)) = newest {
            return path;
        }
        let target = dir.parent().expect("target directory");
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--lib", "--manifest-path"])
            .arg(Path::new(REPO).join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", target);
        if dir.file_name().is_some_and(|name| name == "release") {
            cargo.arg("--release");
        }
        let out = run(&mut cargo, "cargo build --lib", Duration::from_secs(600));
        check(&out, "cargo build --lib");
        assert!(
            uplifted.is_file(),
            "cargo build did not produce {}",
            uplifted.display()
        );
        uplifted
    })
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `cmd` with captured output; kills it and fails after `timeout`.
fn run(cmd: &mut Command, what: &str, timeout: Duration) -> Output {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", cmd.get_program()));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout pipe")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr pipe")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: no result after {timeout:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        elapsed: start.elapsed(),
    }
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}) after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        out.elapsed,
        out.stdout,
        out.stderr
    );
    eprintln!("{what}: ok in {:.1?}", out.elapsed);
}

/// A Python command with the checkout's package on the path and the built library named.
fn python_in_repo() -> Command {
    require_numpy();
    eprintln!("library under test: {}", library().display());
    let mut cmd = Command::new(python());
    cmd.current_dir(REPO)
        .env("EPLB_LIBRARY", library())
        .env("PYTHONPATH", Path::new(REPO).join("python"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

fn require_numpy() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let out = run(
            Command::new(python()).args(["-c", "import numpy"]),
            "import numpy",
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "the Python tests need NumPy for {}: run scripts/setup.sh (or `{} -m pip install numpy`)\n{}",
            python(),
            python(),
            out.stderr
        );
    });
}

#[test]
fn example_py_runs() {
    let out = run(
        python_in_repo().arg("examples/python/example.py"),
        "examples/python/example.py",
        Duration::from_secs(120),
    );
    check(&out, "examples/python/example.py");
    for needle in [
        "deepseek:",
        "refined:",
        "phy2log",
        "error path: status 8",
        "all checks passed",
    ] {
        assert!(
            out.stdout.contains(needle),
            "example output lacks {needle:?}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn python_package_unittests() {
    let out = run(
        python_in_repo().args(["-m", "unittest", "discover", "-s", "python/tests", "-v"]),
        "python -m unittest discover -s python/tests",
        Duration::from_secs(300),
    );
    check(&out, "python unittest suite");
    eprintln!("{}", out.stderr);
    assert!(
        out.stderr.contains("\nOK"),
        "unittest did not report OK:\n{}",
        out.stderr
    );
}

/// Whether the venv's Python can build the wheel without build isolation (no network): it needs
/// setuptools with `bdist_wheel` (setuptools >= 70.1, or the `wheel` package).
const CAN_BUILD_OFFLINE: &str = "
import importlib.util, sys
import setuptools
version = tuple(int(p) for p in setuptools.__version__.split('.')[:2] if p.isdigit())
sys.exit(0 if version >= (70, 1) or importlib.util.find_spec('wheel') else 1)
";

const USE_INSTALLED: &str = "
import importlib.metadata, pathlib, sys
import eplb
repo = pathlib.Path(sys.argv[1]).resolve()
package = pathlib.Path(eplb.__file__).resolve().parent
venv = pathlib.Path(sys.prefix).resolve()
assert venv in package.parents, f'not the installed package: {package} (venv {venv})'
assert package != repo / 'python' / 'eplb', f'imported from the checkout: {package}'
library = pathlib.Path(eplb.library_path()).resolve()
assert library.parent == package / '_lib', f'library not from the wheel: {library}'
files = [str(f) for f in importlib.metadata.files('eplb')]
assert any(f.replace('\\\\', '/').endswith('eplb/_lib/' + library.name) for f in files), files
weight = eval(sys.argv[2])
phy2log, log2phy, logcnt = eplb.rebalance_experts(weight, 16, 4, 2, 8, algorithm='deepseek')
assert phy2log.tolist()[0] == [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1], phy2log
assert log2phy.shape == (2, 12, 2) and logcnt.sum() == 32
refined = eplb.rebalance_experts(weight, 16, 4, 2, 8)
print('installed eplb', eplb.version(), 'from', package, 'library', library)
";

#[test]
fn pip_install_into_venv() {
    require_numpy();
    let target = profile_dir()
        .parent()
        .expect("target directory")
        .to_path_buf();
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("python-venv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("create the venv directory");
    let _cleanup = RemoveOnDrop(work.clone());
    let venv = work.join("venv");
    let venv_python = if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    };
    let minute = Duration::from_secs(60);

    // A venv that sees the system's NumPy and pip; with its own pip when the system has none.
    let out = run(
        Command::new(python())
            .args(["-m", "venv", "--system-site-packages", "--without-pip"])
            .arg(&venv),
        "python -m venv",
        minute,
    );
    check(&out, "python -m venv --without-pip");
    let has_pip = run(
        Command::new(&venv_python).args(["-m", "pip", "--version"]),
        "pip --version",
        minute,
    );
    if !has_pip.status.success() {
        let out = run(
            Command::new(python())
                .args(["-m", "venv", "--system-site-packages", "--clear"])
                .arg(&venv),
            "python -m venv",
            Duration::from_secs(180),
        );
        check(&out, "python -m venv (with pip)");
    }

    let offline = run(
        Command::new(&venv_python).args(["-c", CAN_BUILD_OFFLINE]),
        "setuptools check",
        minute,
    );
    let mut pip = Command::new(&venv_python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
    ]);
    if offline.status.success() {
        pip.arg("--no-build-isolation");
    }
    // The wheel's build step runs `cargo build --release --lib` for the checkout; a target
    // directory of its own keeps it off the lock of the target directory this test runs from.
    // EPLB_BUILD_DIR keeps setuptools' scratch directories out of python/.
    pip.arg(Path::new(REPO).join("python"))
        .current_dir(&work)
        .env("CARGO", env!("CARGO"))
        .env("CARGO_TARGET_DIR", target.join("python-wheel"))
        .env("EPLB_BUILD_DIR", work.join("setuptools"))
        .env_remove("EPLB_LIBRARY")
        .env_remove("PYTHONPATH");
    let what = format!(
        "pip install ./python ({})",
        if offline.status.success() {
            "--no-build-isolation"
        } else {
            "isolated build: fetches setuptools from PyPI; offline, install `wheel` or setuptools>=70.1"
        }
    );
    let out = run(&mut pip, &what, Duration::from_secs(600));
    check(&out, &what);

    let out = run(
        Command::new(&venv_python)
            .args(["-c", USE_INSTALLED, REPO, README_WEIGHT])
            .current_dir(&work)
            .env_remove("EPLB_LIBRARY")
            .env_remove("PYTHONPATH"),
        "import the installed eplb",
        minute,
    );
    check(&out, "import the installed eplb");
    eprintln!("{}", out.stdout);
}

/// Removes a directory when dropped, also when the test panics.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
