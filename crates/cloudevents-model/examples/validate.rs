//! Checks whether a file holds a valid CloudEvent (or, with `--batch`, a valid batch) in the JSON event format.
//!
//! ```text
//! cargo run -p cloudevents-model --example validate -- [--batch] FILE
//! ```
//!
//! Exit status: 0 valid, 1 invalid, 2 usage or I/O error. Use `-` as FILE to read standard input.

use std::error::Error;
use std::io::Read as _;
use std::process::ExitCode;

use cloudevents_model::{CloudEvent, ParseError, batch};
use serde_json::Value;

const USAGE: &str = "usage: validate [--batch] FILE   (FILE may be - for standard input)";

/// The spec recommends (SHOULD) attribute names of at most 20 characters.
const RECOMMENDED_NAME_LEN: usize = 20;

fn main() -> ExitCode {
    let mut batch_mode = false;
    let mut path = None;
    for argument in std::env::args().skip(1) {
        match argument.as_str() {
            "--batch" => batch_mode = true,
            "-h" | "--help" => {
                say(USAGE);
                return ExitCode::SUCCESS;
            }
            _ if path.is_none() && (argument == "-" || !argument.starts_with('-')) => {
                path = Some(argument)
            }
            _ => {
                complain(USAGE);
                return ExitCode::from(2);
            }
        }
    }
    let Some(path) = path else {
        complain(USAGE);
        return ExitCode::from(2);
    };
    let bytes = match read_input(&path) {
        Ok(bytes) => bytes,
        Err(error) => {
            complain(&format!("error: cannot read {path}: {error}"));
            return ExitCode::from(2);
        }
    };
    let result = if batch_mode {
        batch::from_slice(&bytes)
            .inspect(|events| say(&format!("valid: batch of {} event(s)", events.len())))
    } else {
        CloudEvent::from_slice(&bytes).map(|event| {
            say(&format!(
                "valid: event id {:?} type {:?}",
                event.id(),
                event.ty()
            ));
            vec![event]
        })
    };
    match result {
        Ok(events) => {
            notes(&bytes, &events, batch_mode);
            ExitCode::SUCCESS
        }
        Err(error) => {
            say(&format!("invalid: {}", chain(&error)));
            ExitCode::from(1)
        }
    }
}

/// Prints what is valid but worth knowing: names longer than the spec recommends, and `null` members, which the
/// JSON format reads as absent.
fn notes(bytes: &[u8], events: &[CloudEvent], batch_mode: bool) {
    let documents = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(documents)) if batch_mode => documents,
        Ok(document) if !batch_mode => vec![document],
        _ => Vec::new(),
    };
    for (index, event) in events.iter().enumerate() {
        let prefix = if batch_mode {
            format!("event {index}: ")
        } else {
            String::new()
        };
        for (name, _) in event.extensions() {
            if name.len() > RECOMMENDED_NAME_LEN {
                say(&format!(
                    "note: {prefix}extension `{name}` is longer than {RECOMMENDED_NAME_LEN} characters \
                     (allowed, but the spec recommends against it)"
                ));
            }
        }
        let Some(Value::Object(members)) = documents.get(index) else {
            continue;
        };
        for (name, value) in members {
            if value.is_null() && name != "data" {
                say(&format!(
                    "note: {prefix}`{name}` is null, which the JSON format reads as absent"
                ));
            }
        }
        if members.get("data").is_some_and(Value::is_null) {
            say(&format!("note: {prefix}`data` is an explicit null payload"));
        }
    }
}

fn read_input(path: &str) -> std::io::Result<Vec<u8>> {
    if path == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(path)
    }
}

/// The error and all its sources on one line.
fn chain(error: &ParseError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[expect(clippy::print_stdout, reason = "the verdict is this tool's output")]
fn say(line: &str) {
    println!("{line}");
}

#[expect(
    clippy::print_stderr,
    reason = "usage and I/O errors go to standard error"
)]
fn complain(line: &str) {
    eprintln!("{line}");
}
