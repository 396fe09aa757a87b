//! `gameday validate PATH...`: checks experiment and suite files without
//! touching AWS. A file whose top level has `experiments` is a suite (an
//! experiment may not have that key); a suite's experiments are checked too.

use std::path::{Path, PathBuf};

use crate::experiment;

use super::{Error, Outcome, PathError};

/// Checks every file, reporting each problem as it is found; an error when
/// any file is invalid.
pub(super) fn validate(paths: &[PathBuf]) -> Result<Outcome, Error> {
    let files = experiment_files(paths)?;
    let mut invalid = 0;
    let mut checked: Vec<PathBuf> = files.iter().map(|f| crate::suite::glob::normalize(f)).collect();
    for f in &files {
        if crate::suite::is_suite_file(f) {
            match crate::suite::load(f) {
                Ok(s) => {
                    let members = s.experiments();
                    println!(
                        "ok: {} (suite `{}`, {} experiment(s))",
                        f.display(),
                        s.name,
                        members.len()
                    );
                    for m in members {
                        if checked.contains(&m.file) {
                            continue;
                        }
                        checked.push(m.file.clone());
                        if let Err(e) = experiment::load(&m.file) {
                            invalid += 1;
                            eprintln!("{e}");
                        }
                    }
                }
                Err(e) => {
                    invalid += 1;
                    eprintln!("{e}");
                }
            }
            continue;
        }
        match experiment::load(f) {
            Ok(exp) => println!(
                "ok: {} (experiment `{}`, {} fault(s), {} guardrail(s))",
                f.display(),
                exp.name,
                exp.faults.len(),
                exp.guardrails.len()
            ),
            Err(e) => {
                invalid += 1;
                eprintln!("{e}");
            }
        }
    }
    if invalid > 0 {
        Err(Error::InvalidFiles {
            invalid,
            of: files.len(),
        })
    } else {
        Ok(Outcome::Done)
    }
}

/// Every experiment file named by `paths` (folders are searched recursively).
pub(super) fn experiment_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, PathError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = out.len();
            collect_yaml(p, &mut out).map_err(|source| PathError::Folder {
                dir: p.clone(),
                source,
            })?;
            if out.len() == before {
                return Err(PathError::NoExperiments(p.clone()));
            }
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(PathError::Missing(p.clone()));
        }
    }
    Ok(out)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries.into_iter().filter(|p| !crate::util::is_hidden(p)) {
        if p.is_dir() {
            collect_yaml(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    Ok(())
}
