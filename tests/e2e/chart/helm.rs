//! Helpers of the chart tests: running helm and kubectl from the test bed, rendering the
//! chart into JSON documents, and releases that uninstall themselves when a test ends.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::Testbed;

/// The chart in this repository.
pub fn chart_dir() -> PathBuf {
    repo().join("charts/understudy")
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// helm and kubectl of the test bed, talking to its API server.
#[derive(Clone)]
pub struct Tools {
    helm: String,
    kubectl: String,
    kubeconfig: String,
}

fn describe(cmd: &str, args: &[&str]) -> String {
    format!("{cmd} {}", args.join(" "))
}

fn run(program: &str, kubeconfig: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .current_dir(repo())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", describe(program, args)));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {}: {e}", describe(program, args)))
}

impl Tools {
    pub fn new(tb: &Testbed) -> Self {
        Tools {
            helm: tb.var("TESTBED_HELM"),
            kubectl: tb.var("TESTBED_KUBECTL"),
            kubeconfig: tb.var("TESTBED_KUBECONFIG"),
        }
    }

    /// Run helm; the raw output.
    pub fn helm(&self, args: &[&str]) -> Output {
        run(&self.helm, &self.kubeconfig, args, None)
    }

    /// Run helm and expect success; its stdout.
    pub fn helm_ok(&self, args: &[&str]) -> String {
        let out = self.helm(args);
        assert!(
            out.status.success(),
            "`helm {}` failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("helm prints UTF-8")
    }

    /// Run helm and expect failure; its stderr.
    pub fn helm_fails(&self, args: &[&str]) -> String {
        let out = self.helm(args);
        assert!(
            !out.status.success(),
            "`helm {}` succeeded but should have failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Run kubectl (optionally with stdin) and expect success; its stdout.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = run(&self.kubectl, &self.kubeconfig, args, stdin);
        assert!(
            out.status.success(),
            "`kubectl {}` failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
    }

    /// `helm template` of the chart with extra arguments, as JSON documents.
    pub fn template(&self, release: &str, namespace: &str, extra: &[&str]) -> Vec<Value> {
        let chart = chart_dir();
        let mut args = vec![
            "template",
            release,
            chart.to_str().expect("UTF-8 path"),
            "-n",
            namespace,
        ];
        args.extend_from_slice(extra);
        yaml_docs(&self.helm_ok(&args))
    }
}

/// Parse a multi-document YAML stream into JSON values, skipping empty documents.
pub fn yaml_docs(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            let v = serde_yaml::Value::deserialize(doc).expect("valid YAML");
            serde_json::to_value(v).expect("YAML maps to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The documents of `kind`.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one document of `kind` named `name`; panics listing what there is.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let have: Vec<String> = docs
                .iter()
                .map(|d| format!("{}/{}", d["kind"], d["metadata"]["name"]))
                .collect();
            panic!("no {kind} {name} in the rendered chart; it has {have:?}")
        })
}

/// A Helm release in the test bed that is uninstalled when dropped (also when the test
/// panics), so a failed test leaves no cluster-scoped objects behind.
pub struct Release {
    pub tools: Tools,
    pub name: String,
    pub namespace: String,
    gone: bool,
}

impl Release {
    /// `helm install NAME CHART -n NAMESPACE ARGS…`. The people's ClusterRoles get the
    /// release name as prefix, so concurrent releases do not collide.
    pub fn install(tools: &Tools, name: &str, namespace: &str, args: &[&str]) -> Self {
        let chart = chart_dir();
        let prefix = format!("rbac.peopleRoles.namePrefix={name}");
        let mut all = vec![
            "install",
            name,
            chart.to_str().expect("UTF-8 path"),
            "-n",
            namespace,
            "--timeout",
            "60s",
            "--set",
            &prefix,
        ];
        all.extend_from_slice(args);
        tools.helm_ok(&all);
        Release {
            tools: tools.clone(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            gone: false,
        }
    }

    /// `helm upgrade --reset-then-reuse-values` (the chart's current defaults, then the
    /// values set before, then `args` — what the chart README tells people to run; bare
    /// `--reuse-values` would keep the old chart's defaults) with more arguments; the output.
    pub fn upgrade(&self, args: &[&str]) -> String {
        let chart = chart_dir();
        let mut all = vec![
            "upgrade",
            &self.name,
            chart.to_str().expect("UTF-8 path"),
            "-n",
            &self.namespace,
            "--reset-then-reuse-values",
            "--timeout",
            "60s",
        ];
        all.extend_from_slice(args);
        self.tools.helm_ok(&all)
    }

    /// `helm uninstall`; the output.
    pub fn uninstall(&mut self) -> String {
        let out = self
            .tools
            .helm_ok(&["uninstall", &self.name, "-n", &self.namespace]);
        self.gone = true;
        out
    }

    /// The release's full name (resource names): `<release>-understudy`.
    pub fn fullname(&self) -> String {
        format!("{}-understudy", self.name)
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.gone {
            let _ = self
                .tools
                .helm(&["uninstall", &self.name, "-n", &self.namespace]);
        }
    }
}

/// Names of the files in `dir` with extension `ext`, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}
