//! `gameday schema`: the JSON Schemas of the experiment, policy and suite
//! formats, generated from the decoders (see `crate::schema`), for editors.
//! `schema/*.schema.json` are their checked-in copies; a test fails when the
//! copies and the decoders drift apart, naming the command that regenerates them.

use std::path::Path;

use clap::ValueEnum;

use super::shared::print_text;
use super::{Error, Outcome};

/// How to use the schemas; shown by `gameday schema --help`.
pub(super) const AFTER_HELP: &str = "\
Use in an editor (relative to the YAML file, first line):
  # yaml-language-server: $schema=../schema/experiment.schema.json
or for every file of a folder, in VS Code's settings.json:
  \"yaml.schemas\": { \"./schema/experiment.schema.json\": \"experiments/*.yaml\" }

Regenerate the checked-in copies after changing a decoder:
  gameday schema --write schema/";

/// The command that regenerates the checked-in schemas, for the drift test's message.
#[cfg(test)]
pub(crate) const REGENERATE: &str = "cargo run -- schema --write schema/";

/// A file format with a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Experiment files (experiments/*.yaml).
    Experiment,
    /// The safety policy (safety/policy.yaml).
    Policy,
    /// Suite files (suites/*.yaml).
    Suite,
}

impl Format {
    /// Every format, in the order they are written.
    pub(crate) const ALL: [Format; 3] = [Format::Experiment, Format::Policy, Format::Suite];

    /// The schema's file name: `experiment.schema.json`.
    pub(crate) fn file_name(self) -> &'static str {
        match self {
            Format::Experiment => "experiment.schema.json",
            Format::Policy => "policy.schema.json",
            Format::Suite => "suite.schema.json",
        }
    }

    /// The schema as JSON text, as checked in: pretty, one final newline.
    pub(crate) fn text(self) -> String {
        let doc = match self {
            Format::Experiment => crate::experiment::schema(),
            Format::Policy => crate::policy::schema(),
            Format::Suite => crate::suite::schema(),
        };
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Prints `format`'s schema, or writes it (every format's when `None`) into `dir`.
pub(super) fn schema(format: Option<Format>, dir: Option<&Path>) -> Result<Outcome, Error> {
    let Some(dir) = dir else {
        // clap requires FORMAT without --write.
        print_text(&format.unwrap_or(Format::Experiment).text());
        return Ok(Outcome::Done);
    };
    let formats = match format {
        Some(f) => vec![f],
        None => Format::ALL.to_vec(),
    };
    std::fs::create_dir_all(dir).map_err(|source| Error::SchemaWrite {
        path: dir.to_path_buf(),
        source,
    })?;
    for f in formats {
        let path = dir.join(f.file_name());
        std::fs::write(&path, f.text()).map_err(|source| Error::SchemaWrite {
            path: path.clone(),
            source,
        })?;
        eprintln!("wrote {}", path.display());
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests;
