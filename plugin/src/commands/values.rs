//! Plaintext values at the edges: where patch values come from (files or stdin, never
//! argv) and how revealed values are rendered. Buffers holding values are zeroized.

use crate::cli::RevealFormat;
use crate::error::PluginError;
use sb_core::seal::SecretValue;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Refuses a key a Kubernetes Secret could not hold (the CRD's SECRET_KEY_PATTERN).
pub fn check_key_name(key: &str) -> Result<(), PluginError> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(PluginError::Usage(format!(
            "{key:?} is not a usable key name: use letters, digits, '-', '.' and '_' (at most 253)"
        )))
    }
}

/// Where one new value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    File(PathBuf),
    Stdin,
}

/// Parses `KEY=@FILE` or `KEY=-`. `KEY=value` is refused without echoing the value.
pub fn parse_assignment(text: &str) -> Result<(String, ValueSource), PluginError> {
    let Some((key, source)) = text.split_once('=') else {
        return Err(PluginError::Usage(
            "a new value is written KEY=@FILE (read from a file) or KEY=- (read from stdin)".into(),
        ));
    };
    check_key_name(key)?;
    match source {
        "-" => Ok((key.to_owned(), ValueSource::Stdin)),
        file if file.starts_with('@') && file.len() > 1 => Ok((key.to_owned(), ValueSource::File(file[1..].into()))),
        _ => Err(PluginError::Usage(format!(
            "refusing {key}=<value>: a value typed on the command line stays in your shell history and \
             is visible to other users of this machine through `ps`; put it in a file and pass {key}=@FILE, \
             or pipe it in and pass {key}=-"
        ))),
    }
}

/// Reads every value; stdin may feed at most one key.
pub fn read_values(assignments: &[(String, ValueSource)]) -> Result<BTreeMap<String, SecretValue>, PluginError> {
    if assignments.iter().filter(|(_, s)| *s == ValueSource::Stdin).count() > 1 {
        return Err(PluginError::Usage("only one key can read its value from stdin (KEY=-)".into()));
    }
    let mut values = BTreeMap::new();
    for (key, source) in assignments {
        let bytes = match source {
            ValueSource::File(path) => std::fs::read(path)
                .map_err(PluginError::io(format!("reading the value of {key} from {}", path.display())))?,
            ValueSource::Stdin => {
                let mut buffer = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buffer)
                    .map_err(PluginError::io(format!("reading the value of {key} from stdin")))?;
                buffer
            }
        };
        if values.insert(key.clone(), SecretValue::new(bytes)).is_some() {
            return Err(PluginError::Usage(format!("{key} is given twice")));
        }
    }
    Ok(values)
}

/// Renders revealed values in `format`.
pub fn render(values: &BTreeMap<String, SecretValue>, format: RevealFormat) -> Result<Zeroizing<Vec<u8>>, PluginError> {
    let text = |key: &str, value: &SecretValue| -> Result<String, PluginError> {
        value.expose_str().map(str::to_owned).map_err(|_| {
            PluginError::Usage(format!(
                "the value of {key} is binary, not text: reveal it with -o raw --to FILE (one key per request)"
            ))
        })
    };
    let out = match format {
        RevealFormat::Raw => {
            let mut iter = values.values();
            match (iter.next(), iter.next()) {
                (Some(value), None) => Zeroizing::new(value.expose().to_vec()),
                _ => {
                    return Err(PluginError::Usage(format!(
                        "-o raw prints a single value but this delivery holds {} keys; use -o env, json or yaml",
                        values.len()
                    )));
                }
            }
        }
        RevealFormat::Env => {
            let mut out = Zeroizing::new(Vec::new());
            for (key, value) in values {
                let value = Zeroizing::new(text(key, value)?);
                out.extend_from_slice(format!("{key}='{}'\n", value.replace('\'', r"'\''")).as_bytes());
            }
            out
        }
        RevealFormat::Json | RevealFormat::Yaml => {
            let mut map = BTreeMap::new();
            for (key, value) in values {
                map.insert(key.as_str(), Zeroizing::new(text(key, value)?));
            }
            let plain: BTreeMap<&str, &str> = map.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut out = Zeroizing::new(Vec::new());
            if format == RevealFormat::Json {
                serde_json::to_writer_pretty(&mut *out, &plain).expect("strings always serialise");
                out.push(b'\n');
            } else {
                serde_yaml::to_writer(&mut *out, &plain).expect("strings always serialise");
            }
            out
        }
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretValue> {
        pairs.iter().map(|(k, v)| (k.to_string(), SecretValue::from(*v))).collect()
    }

    #[test]
    fn a_value_on_the_command_line_is_refused_without_echoing_it() {
        let err = parse_assignment("password=hunter2-canary").unwrap_err().to_string();
        assert!(err.contains("password=@FILE") && err.contains("shell history"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(parse_assignment("password=-").unwrap(), ("password".into(), ValueSource::Stdin));
        assert_eq!(parse_assignment("a.b=@/tmp/x").unwrap(), ("a.b".into(), ValueSource::File("/tmp/x".into())));
        assert!(parse_assignment("bad key=@x").is_err());
    }

    #[test]
    fn formats_print_exactly_the_values() {
        let v = values(&[("password", "it's"), ("user", "app")]);
        assert_eq!(&**render(&v, RevealFormat::Env).unwrap(), b"password='it'\\''s'\nuser='app'\n");
        let json: serde_json::Value = serde_json::from_slice(&render(&v, RevealFormat::Json).unwrap()).unwrap();
        assert_eq!(json, serde_json::json!({"password": "it's", "user": "app"}));
        let yaml: serde_json::Value = serde_yaml::from_slice(&render(&v, RevealFormat::Yaml).unwrap()).unwrap();
        assert_eq!(yaml, json);
        assert!(render(&v, RevealFormat::Raw).is_err());
        assert_eq!(&**render(&values(&[("k", "raw\n")]), RevealFormat::Raw).unwrap(), b"raw\n");
    }
}
