//! The CRD YAML checked in under `manifests/crds/` is exactly what the Rust types
//! generate. When this fails, run `make generate` and commit the result.

use std::process::Command;

const CHECKED_IN: &str = "manifests/crds/understudy.dev.yaml";

#[test]
fn checked_in_crds_match_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CHECKED_IN);
    let on_disk = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}; run `make generate`", path.display()));
    let generated = understudy::api::crds_yaml().expect("generate CRDs");
    assert!(
        on_disk == generated,
        "{CHECKED_IN} is out of date with the Rust types in src/api/: run `make generate` and commit the result"
    );
}

#[test]
fn understudy_crd_prints_all_three_crds() {
    let out = Command::new(env!("CARGO_BIN_EXE_understudy"))
        .arg("crd")
        .output()
        .expect("run understudy crd");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in [
        "accountpairs.understudy.dev",
        "switchovers.understudy.dev",
        "drills.understudy.dev",
    ] {
        assert!(text.contains(&format!("name: {name}")), "missing {name}");
    }
    let json = Command::new(env!("CARGO_BIN_EXE_understudy"))
        .args(["crd", "-o", "json"])
        .output()
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("-o json is JSON");
    assert_eq!(parsed.as_array().map(Vec::len), Some(3));
}

#[test]
fn binary_acts_as_kubectl_plugin_under_that_name() {
    let dir = std::env::temp_dir().join(format!("understudy-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = dir.join("kubectl-understudy");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_understudy"), &plugin).unwrap();
    let out = Command::new(&plugin)
        .arg("--help")
        .output()
        .expect("run as kubectl-understudy");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        help.contains("kubectl understudy"),
        "plugin help names the kubectl verb: {help}"
    );
    // A wrong verb is a usage error with exit code 2, for scripts.
    let bad = Command::new(&plugin).arg("no-such-verb").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}
