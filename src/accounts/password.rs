//! Passwords: a type that never prints what it holds, and Argon2id
//! hashing in PHC string format.
//!
//! Hashing is deliberately slow (tens of milliseconds, 19 MiB of memory):
//! these functions are only ever called on the blocking thread pool, by
//! the accounts actor, a bounded number at a time.

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

/// A password as the user sent it. Its `Debug` hides it, so no log line
/// or panic message built from a value holding one can show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps the text of a password.
    pub fn new(text: &str) -> Self {
        Password(text.to_owned())
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Argon2id with the memory and time costs OWASP's password storage cheat
/// sheet gives as its first choice (m = 19 MiB, t = 2, p = 1), which are
/// also the `argon2` crate's defaults: about 20 to 40 ms of one core per
/// hash on a current x86 machine. Every hash records its parameters (PHC
/// string), so raising them later still verifies the old hashes.
pub const M_COST_KIB: u32 = 19 * 1024;
/// See [`M_COST_KIB`].
pub const T_COST: u32 = 2;
/// See [`M_COST_KIB`].
pub const P_COST: u32 = 1;

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params =
        Params::new(M_COST_KIB, T_COST, P_COST, None).map_err(|e| HashError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashing failed (bad parameters, no randomness for the salt, or a
/// stored hash that is not a PHC string). Never a wrong password.
#[derive(Debug, thiserror::Error)]
#[error("password hashing: {0}")]
pub struct HashError(String);

impl From<argon2::password_hash::Error> for HashError {
    fn from(e: argon2::password_hash::Error) -> Self {
        HashError(e.to_string())
    }
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) of
/// `password` with a fresh random salt.
pub fn hash(password: &Password) -> Result<String, HashError> {
    Ok(argon2()?.hash_password(password.bytes())?.to_string())
}

/// Whether `password` is the one `phc` was made from.
pub fn verify(password: &Password, phc: &str) -> Result<bool, HashError> {
    match argon2()?.verify_password(password.bytes(), phc) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let right = Password::new("correct-horse");
        let phc = hash(&right).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(&right, &phc).unwrap());
        assert!(!verify(&Password::new("correct-hors"), &phc).unwrap());
        // Salted: the same password twice gives two hashes.
        assert_ne!(hash(&right).unwrap(), phc);
        assert!(verify(&right, "not a phc string").is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        assert_eq!(format!("{:?}", Password::new("hunter2")), "Password(..)");
    }
}
