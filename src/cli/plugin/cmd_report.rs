//! `report -o DIR|FILE.tar.gz`: a support bundle for the maintainers — versions, the
//! namespace's AccountPairs, Switchovers and Drills, the operator's Lease(s),
//! Deployment(s) and logs, and recent Events, with a README.txt listing every file.
//!
//! Secrets are never written. Every file goes through [`Redactor::text`]: the values of
//! the Secrets of the namespaces in the bundle (when the user may read them) and every
//! credential-shaped fragment become `<redacted>`. What cannot be read (logs of an
//! operator that runs outside the cluster, Events without permission) is said in
//! README.txt instead of failing the report.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::client::Kube;
use super::redact::Redactor;
use super::report_collect::{File, collect};
use super::{Failure, Outcome};

/// Where the bundle goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Form {
    Dir(PathBuf),
    TarGz(PathBuf),
}

/// Pure: a path ending in `.tar.gz` or `.tgz` is an archive, anything else a directory.
pub fn form_of(path: &Path) -> Form {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Form::TarGz(path.to_path_buf())
    } else {
        Form::Dir(path.to_path_buf())
    }
}

/// Pure: the archive's top directory, from its file name (`x/bundle.tar.gz` → `bundle`).
pub fn archive_root(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".tar.gz")
        .or_else(|| name.strip_suffix(".tgz"))
        .unwrap_or(&name);
    if stem.is_empty() {
        "understudy-report".into()
    } else {
        stem.to_string()
    }
}

/// What README.txt says about the bundle as a whole.
pub struct Meta<'a> {
    pub namespace: &'a str,
    pub operator_namespaces: &'a [String],
    pub since: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub by: &'a str,
    /// Namespaces whose Secret values were read to be redacted.
    pub secrets_read: &'a [String],
}

/// Pure: README.txt, listing `files` (itself included) and what is missing.
pub fn readme(m: &Meta<'_>, files: &[File], notes: &[String]) -> String {
    let ops = if m.operator_namespaces.is_empty() {
        "none found".to_string()
    } else {
        m.operator_namespaces.join(", ")
    };
    let mut t = format!(
        "understudy support bundle\n\
         Namespace {}; operator namespace(s): {ops}.\n\
         Events and logs from {} to {} (UTC). Made by {} with `kubectl understudy report`.\n\n\
         Files\n-----\n",
        m.namespace,
        m.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        m.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        m.by,
    );
    let width = files
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(0)
        .max(10);
    let mut listed: Vec<&File> = files.iter().collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    t.push_str(&format!("{:<width$}  This file.\n", "README.txt"));
    for f in listed.iter().filter(|f| f.name != "README.txt") {
        t.push_str(&format!("{:<width$}  {}\n", f.name, f.about));
    }
    t.push_str(
        "\nSecrets\n-------\nNo Secret is included. Every file had credential-shaped text replaced by \
         <redacted>: password/token/secret/apiKey-style keys with their values, \
         Authorization header values (Bearer, Basic), JWTs, PEM private keys, user:password@ in URLs, and environment \
         variables named like credentials.\n",
    );
    if m.secrets_read.is_empty() {
        t.push_str(
            "The values of the namespaces' Secrets could not be read, so only the shapes above \
             were redacted: read the files before sending them.\n",
        );
    } else {
        t.push_str(&format!(
            "The values of every Secret in namespace(s) {} (read, never written) were replaced \
             wherever they appeared, also base64-encoded (values shorter than {} characters \
             excepted).\n",
            m.secrets_read.join(", "),
            super::redact::MIN_KNOWN
        ));
    }
    if !notes.is_empty() {
        t.push_str("\nNot included\n------------\n");
        for n in notes {
            t.push_str(&format!("- {n}\n"));
        }
    }
    t
}

fn io_failure(what: &Path, e: impl std::fmt::Display) -> Failure {
    Failure::failed(format!("writing {}: {e}", what.display()))
}

/// Write the (already redacted) files.
pub(super) fn write(form: &Form, files: &[File]) -> Outcome {
    match form {
        Form::Dir(dir) => {
            for f in files {
                let path = dir.join(&f.name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| io_failure(parent, e))?;
                }
                std::fs::write(&path, &f.body).map_err(|e| io_failure(&path, e))?;
            }
            Ok(())
        }
        Form::TarGz(path) => {
            let entries: Vec<(String, Vec<u8>)> = files
                .iter()
                .map(|f| (f.name.clone(), f.body.clone().into_bytes()))
                .collect();
            let mtime = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
            let bytes = super::tarball::tar_gz(&archive_root(path), &entries, mtime)
                .map_err(|e| io_failure(path, e))?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| io_failure(parent, e))?;
            }
            std::fs::write(path, bytes).map_err(|e| io_failure(path, e))
        }
    }
}

/// `kubectl understudy report`.
pub async fn run(kube: &Kube, output: &Path, since: &str, operator_ns: Option<&str>) -> Outcome {
    let window = crate::audit::parse_duration(since).ok_or_else(|| {
        Failure::usage(format!(
            "--since {since:?} is not a duration like 24h or 30m"
        ))
    })?;
    let form = form_of(output);
    if let Form::Dir(d) = &form
        && d.is_file()
    {
        return Err(Failure::usage(format!(
            "{} is a file: name a directory, or a FILE.tar.gz",
            d.display()
        )));
    }
    let now = Utc::now();
    let since_t = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(1));
    let c = collect(kube, operator_ns, window, since_t).await?;
    let by = kube.whoami().await;
    let meta = Meta {
        namespace: &kube.namespace,
        operator_namespaces: &c.operator_namespaces,
        since: since_t,
        now,
        by: &by,
        secrets_read: &c.secrets_read,
    };
    let mut files = c.files;
    let readme_text = readme(&meta, &files, &c.notes);
    files.push(File::new("README.txt", "This file.", readme_text));
    let redactor: &Redactor = &c.redactor;
    for f in &mut files {
        f.body = redactor.text(&f.body);
    }
    write(&form, &files)?;
    println!(
        "wrote {}: {} files{}",
        output.display(),
        files.len(),
        if c.notes.is_empty() {
            String::new()
        } else {
            format!(" ({} parts missing, see README.txt)", c.notes.len())
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_and_directories_are_told_apart_by_name() {
        assert_eq!(
            form_of(Path::new("/tmp/b.tar.gz")),
            Form::TarGz("/tmp/b.tar.gz".into())
        );
        assert_eq!(form_of(Path::new("b.TGZ")), Form::TarGz("b.TGZ".into()));
        assert_eq!(form_of(Path::new("./bundle")), Form::Dir("./bundle".into()));
        assert_eq!(archive_root(Path::new("/tmp/case-42.tar.gz")), "case-42");
        assert_eq!(archive_root(Path::new("x.tgz")), "x");
    }

    #[test]
    fn readme_lists_every_file_and_what_is_missing() {
        let now = Utc::now();
        let files = vec![
            File::new("versions.json", "Versions.", "{}"),
            File::new("accountpairs.yaml", "The pairs.", "[]"),
        ];
        let notes = vec!["operator logs: no operator Deployment found".to_string()];
        let m = Meta {
            namespace: "payments",
            operator_namespaces: &[],
            since: now - chrono::Duration::hours(24),
            now,
            by: "alice",
            secrets_read: &[],
        };
        let r = readme(&m, &files, &notes);
        for (f, about) in [
            ("README.txt", "This file."),
            ("versions.json", "Versions."),
            ("accountpairs.yaml", "The pairs."),
        ] {
            assert!(
                r.lines().any(|l| l.starts_with(f) && l.ends_with(about)),
                "{f}:\n{r}"
            );
        }
        assert!(r.contains("Not included") && r.contains("no operator Deployment"));
        assert_eq!(
            Redactor::default().text(&r),
            r,
            "the README's own words survive the redaction every file goes through"
        );
        assert!(
            r.contains("could not be read"),
            "no Secret values read: said so\n{r}"
        );
        let read = vec!["payments".to_string()];
        let r = readme(
            &Meta {
                secrets_read: &read,
                ..m
            },
            &files,
            &[],
        );
        assert!(r.contains("every Secret in namespace(s) payments") && !r.contains("Not included"));
    }
}
