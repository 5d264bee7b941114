//! Reading the `--auth-file` from disk: the one place of `auth` that does I/O.
//!
//! Why here and not in `config` or `runtime`: the file is read at start-up (by
//! [`Config`](crate::config::Config) validation) and again on every SIGHUP (by the
//! runtime's reload thread). Both need the same reading and the same error text, and
//! neither should import the other for it. Reading happens on those threads only,
//! never on a request path; the parsing itself stays the pure [`Subscribers::parse`].

use std::fmt;
use std::path::{Path, PathBuf};

use super::{LoadError, Subscribers};

/// Why a subscriber file did not load. Displays as `PATH: reason`; never contains a
/// line's text (it may hold a password).
#[derive(Debug)]
pub enum SubscriberFileError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// A line of the file is malformed.
    Parse {
        /// The file.
        path: PathBuf,
        /// Which line, and why.
        error: LoadError,
    },
}

impl fmt::Display for SubscriberFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, error } => write!(f, "{}: {error}", path.display()),
            Self::Parse { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for SubscriberFileError {}

/// Read and parse the subscriber file at `path`.
pub fn load(path: &Path) -> Result<Subscribers, SubscriberFileError> {
    let text = std::fs::read_to_string(path).map_err(|error| SubscriberFileError::Read {
        path: path.to_owned(),
        error,
    })?;
    Subscribers::parse(&text).map_err(|error| SubscriberFileError::Parse {
        path: path.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_path_and_the_line_never_the_secret() {
        let dir = std::env::temp_dir().join(format!("sipreg-subfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing");
        let e = load(&missing).unwrap_err();
        assert!(matches!(e, SubscriberFileError::Read { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: ", missing.display())),
            "{e}"
        );

        let bad = dir.join("bad");
        std::fs::write(&bad, "secret-password-line-without-fields\n").unwrap();
        let e = load(&bad).unwrap_err();
        assert!(
            matches!(
                e,
                SubscriberFileError::Parse {
                    error: LoadError { line: 1, .. },
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(!e.to_string().contains("secret-password"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
