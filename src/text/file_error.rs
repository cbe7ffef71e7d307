//! The one error type of the operator's files (`config.json`, `.rai`): which file, which field, and
//! what is wrong in words that say what a valid value looks like. Loaders build it; `main.rs` prints
//! it. It never carries a value from the file, which may be a key or a password.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with an operator's file, written for the person who has to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: PathBuf,
    /// Dotted path of the offending field (`server.port`, `crypto.previous_keys[0].key`); empty when the
    /// problem is the file as a whole (unreadable, not JSON).
    pub field: String,
    /// What is wrong, usually as "expected ...".
    pub problem: String,
}

impl FileError {
    pub fn new(file: &Path, field: &str, problem: impl Into<String>) -> FileError {
        FileError {
            file: file.to_path_buf(),
            field: field.to_owned(),
            problem: problem.into(),
        }
    }

    /// A problem with the file as a whole.
    pub fn whole(file: &Path, problem: impl Into<String>) -> FileError {
        FileError::new(file, "", problem)
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.problem)
        } else {
            write!(
                f,
                "{}: field `{}`: {}",
                self.file.display(),
                self.field,
                self.problem
            )
        }
    }
}

impl std::error::Error for FileError {}
