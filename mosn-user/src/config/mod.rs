//! Configuration: MOSN's JSON (or the same schema in YAML) -> validated [`Config`].
//!
//! Three separate steps: [`load`] reads a file, [`parse`] decodes text into the file-shaped
//! [`raw`] types (a syntax or type error stops here, with its field path and line/column),
//! and [`validate::validate`] turns those into the [`model`] types, collecting *every* problem
//! with its field path. Keys we do not support (MOSN has many) are never errors: each becomes
//! a warning in [`Loaded::warnings`] naming its full path.
//!
//! Durations are Go duration strings ("30s", "1m30s", "500ms") or integers, which, as in Go's
//! `time.Duration` JSON encoding that MOSN uses, are **nanoseconds**.

mod addr;
pub mod capture;
mod diag;
mod duration;
mod error;
pub mod filter;
pub mod health;
pub mod http2;
pub mod lb;
pub mod model;
pub mod raw;
pub mod router;
mod size;
pub mod tls;
pub mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::{ConfigError, FieldError};
pub use model::*;

/// A validated config and the warnings found on the way (unsupported keys, skipped
/// listeners), to be logged once at warn level.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Text format of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// `.yaml`/`.yml` (any case) is YAML; anything else is JSON, MOSN's format.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml") => {
                Format::Yaml
            }
            _ => Format::Json,
        }
    }
}

/// Reads, parses and validates the config file at `path` (format from its extension).
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, Format::from_path(path))
}

/// Parses and validates config text.
pub fn parse(text: &str, format: Format) -> Result<Loaded, ConfigError> {
    validate::validate(&decode(text, format)?)
}

/// Decodes text into the file-shaped types, without validating.
pub fn decode(text: &str, format: Format) -> Result<raw::RawConfig, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::Syntax {
            path: ".".into(),
            message: "the config is empty".into(),
            line: None,
            column: None,
        });
    }
    decode_as(text, format)
}

/// Parses and validates one workload file of `capture.workloads_dir` (node mode): one
/// workload object, JSON, or YAML for `.yaml`/`.yml`. The name defaults to the file stem;
/// `sk_msg` and the inbound-listener check come from `defaults` (the running capture config).
/// Errors name the file and the field (`/etc/mosn/workloads/a.json: cgroup: ...`).
/// Unknown keys are logged as warnings; [`parse_workload_with_warnings`] returns them instead.
///
/// Uniqueness of names and cgroups across files and inline workloads is the caller's to check
/// (it knows the others).
pub fn parse_workload(
    text: &str,
    path: &Path,
    defaults: &CaptureConfig,
) -> Result<WorkloadConfig, ConfigError> {
    let (workload, warnings) = parse_workload_with_warnings(text, path, defaults)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(workload)
}

/// [`parse_workload`], returning the warnings (each prefixed with the file) instead of
/// logging them.
pub fn parse_workload_with_warnings(
    text: &str,
    path: &Path,
    defaults: &CaptureConfig,
) -> Result<(WorkloadConfig, Vec<String>), ConfigError> {
    use validate::capture::{WorkloadDefaults, in_file, workload};
    if text.trim().is_empty() {
        return Err(ConfigError::Syntax {
            path: in_file(path, "."),
            message: "the workload file is empty".into(),
            line: None,
            column: None,
        });
    }
    let raw: raw::RawWorkload = decode_as(text, Format::from_path(path)).map_err(|e| match e {
        ConfigError::Syntax {
            path: field,
            message,
            line,
            column,
        } => ConfigError::Syntax {
            path: in_file(path, &field),
            message,
            line,
            column,
        },
        other => other,
    })?;
    let stem = path.file_stem().and_then(|s| s.to_str());
    let mut d = diag::Diag::default();
    let w = workload(&raw, "", stem, &WorkloadDefaults::from(defaults), &mut d);
    match w {
        Some(w) if d.errors.is_empty() => {
            let file = path.display();
            let warnings = d
                .warnings
                .into_iter()
                .map(|w| format!("{file}: {w}"))
                .collect();
            Ok((w, warnings))
        }
        _ => Err(ConfigError::Invalid(
            d.errors
                .into_iter()
                .map(|e| FieldError {
                    path: in_file(path, &e.path),
                    reason: e.reason,
                })
                .collect(),
        )),
    }
}

/// Decodes non-empty text into any of the file-shaped types, with the field path of a
/// syntax or type error.
fn decode_as<T: serde::de::DeserializeOwned>(text: &str, format: Format) -> Result<T, ConfigError> {
    match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let raw = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                let e = e.into_inner();
                syntax_error(path, &e.to_string(), e.line(), e.column())
            })?;
            // Trailing characters after the top-level object.
            de.end()
                .map_err(|e| syntax_error(".".into(), &e.to_string(), e.line(), e.column()))?;
            Ok(raw)
        }
        Format::Yaml => {
            let de = serde_yaml::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let e = e.into_inner();
                let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                syntax_error(path, &e.to_string(), line, column)
            })
        }
    }
}

/// Builds [`ConfigError::Syntax`], taking the decoder's own " at line L column C" and (YAML)
/// "path: " prefix off its message: both are kept in fields and shown once. Line 0 means
/// unknown.
fn syntax_error(path: String, message: &str, line: usize, column: usize) -> ConfigError {
    let message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
    let message = match message.strip_prefix(&format!("{path}: ")) {
        Some(rest) => rest.to_owned(),
        None => message,
    };
    ConfigError::Syntax {
        path,
        message,
        line: (line > 0).then_some(line),
        column: (line > 0).then_some(column),
    }
}
