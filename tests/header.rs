//! The committed header `include/eplb.h` equals what cbindgen generates from the sources now.

use std::path::Path;

#[test]
fn committed_header_is_fresh() {
    let crate_dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(Path::new(crate_dir).join("cbindgen.toml"))
        .expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("utf-8 header");
    let path = Path::new(crate_dir).join("include/eplb.h");
    if std::env::var_os("EPLB_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/eplb.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/eplb.h is stale: it differs from what cbindgen generates from the sources. \
         Refresh it with `EPLB_BLESS=1 cargo test --test header` and commit the result."
    );
}

#[test]
fn header_version_macros_match_cargo() {
    let header = include_str!("../include/eplb.h");
    for (name, value) in [
        ("EPLB_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("EPLB_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("EPLB_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        let line = format!("#define {name} {value}");
        assert!(header.contains(&line), "header lacks `{line}`");
    }
}
