//! The account commands (`/register`, `/password`, `/unregister`) and what
//! a password may be.
//!
//! Apart from [`super::request`] because these commands carry a secret:
//! their words are never echoed back, put in a batch or logged, and the
//! rules on a password's length live here, next to their parsing, so the
//! session can refuse a bad one before any hashing is spent on it.

/// A new password has at least this many characters: eight is the floor
/// NIST SP 800-63B sets for passwords a user chooses.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// A password has at most this many bytes: long enough for any passphrase
/// without spaces or generated password, short enough that hashing one
/// costs what hashing any other costs.
pub const MAX_PASSWORD_BYTES: usize = 128;

/// An account command, with the password(s) it carries.
#[derive(Clone, PartialEq, Eq)]
pub enum AccountCommand<'a> {
    /// `/register PASSWORD`: register the name logged in with.
    Register(&'a str),
    /// `/password OLD NEW`: change the password.
    Password {
        /// The password now.
        old: &'a str,
        /// The one wanted.
        new: &'a str,
    },
    /// `/unregister PASSWORD`: the name is free for anyone again.
    Unregister(&'a str),
}

/// Passwords never appear in debug output (logs, panics, test failures).
impl std::fmt::Debug for AccountCommand<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AccountCommand::Register(_) => "Register(..)",
            AccountCommand::Password { .. } => "Password(..)",
            AccountCommand::Unregister(_) => "Unregister(..)",
        })
    }
}

/// Why an account command was refused before anything was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccountCommandError {
    /// Wrong number of words.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// A new password shorter than [`MIN_PASSWORD_CHARS`].
    #[error("a password has at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    /// A password longer than [`MAX_PASSWORD_BYTES`].
    #[error("a password has at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
}

/// The usage line of each command, as `/help` and the errors show it.
pub const REGISTER_USAGE: &str = "/register PASSWORD";
/// See [`REGISTER_USAGE`].
pub const PASSWORD_USAGE: &str = "/password OLD NEW";
/// See [`REGISTER_USAGE`].
pub const UNREGISTER_USAGE: &str = "/unregister PASSWORD";

/// Parses an account command: `word` is the command's name (after `/`),
/// `args` what follows it. `None`: not an account command.
pub fn parse_account_command<'a>(
    word: &str,
    args: &'a str,
) -> Option<Result<AccountCommand<'a>, AccountCommandError>> {
    let mut words = args.split_whitespace();
    let mut exactly = |n: usize, usage: &'static str| {
        let got: smallvec::SmallVec<[&'a str; 2]> = words.by_ref().take(n + 1).collect();
        if got.len() == n {
            Ok(got)
        } else {
            Err(AccountCommandError::Usage(usage))
        }
    };
    Some(match word {
        "register" => exactly(1, REGISTER_USAGE)
            .and_then(|w| check_new(w[0]).map(|()| AccountCommand::Register(w[0]))),
        "password" => exactly(2, PASSWORD_USAGE).and_then(|w| {
            check_new(w[1])?;
            Ok(AccountCommand::Password {
                old: w[0],
                new: w[1],
            })
        }),
        "unregister" => exactly(1, UNREGISTER_USAGE).map(|w| AccountCommand::Unregister(w[0])),
        _ => return None,
    })
}

/// Whether `password` may be chosen as a new password. (A password given
/// to prove who one is is only compared: the rule is for new ones.)
pub fn check_new(password: &str) -> Result<(), AccountCommandError> {
    if password.len() > MAX_PASSWORD_BYTES {
        Err(AccountCommandError::TooLong)
    } else if password.chars().count() < MIN_PASSWORD_CHARS {
        Err(AccountCommandError::TooShort)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Option<Result<AccountCommand<'_>, AccountCommandError>> {
        let (word, args) = line.split_once(' ').unwrap_or((line, ""));
        parse_account_command(word, args)
    }

    #[test]
    fn the_three_commands() {
        assert_eq!(
            parse("register  hunter2hunter2 "),
            Some(Ok(AccountCommand::Register("hunter2hunter2")))
        );
        assert_eq!(
            parse("password old-one new-one-long"),
            Some(Ok(AccountCommand::Password {
                old: "old-one",
                new: "new-one-long"
            }))
        );
        // The old password is only compared: any length.
        assert_eq!(
            parse("unregister x"),
            Some(Ok(AccountCommand::Unregister("x")))
        );
        assert_eq!(parse("who"), None);
    }

    #[test]
    fn wrong_word_counts_show_the_usage() {
        for (line, usage) in [
            ("register", REGISTER_USAGE),
            ("register two words-here", REGISTER_USAGE),
            ("password onlyone", PASSWORD_USAGE),
            ("password a b c", PASSWORD_USAGE),
            ("unregister", UNREGISTER_USAGE),
        ] {
            assert_eq!(
                parse(line),
                Some(Err(AccountCommandError::Usage(usage))),
                "{line}"
            );
        }
    }

    #[test]
    fn new_passwords_have_a_length_rule() {
        assert_eq!(
            parse("register short"),
            Some(Err(AccountCommandError::TooShort))
        );
        // Characters, not bytes, for the floor.
        assert_eq!(check_new("ééééééé"), Err(AccountCommandError::TooShort));
        assert_eq!(check_new("éééééééé"), Ok(()));
        assert_eq!(check_new(&"x".repeat(MAX_PASSWORD_BYTES)), Ok(()));
        assert_eq!(
            check_new(&"x".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(AccountCommandError::TooLong)
        );
        assert_eq!(
            parse("password anything tiny"),
            Some(Err(AccountCommandError::TooShort))
        );
    }

    #[test]
    fn debug_output_hides_passwords() {
        let shown = format!("{:?}", AccountCommand::Register("hunter2hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
