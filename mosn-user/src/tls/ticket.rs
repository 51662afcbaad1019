//! Session tickets sealed with keys from files (`session_ticket_keys`), in Envoy's 80-byte
//! format, so several processes (or a restarted one) can resume each other's sessions.
//!
//! ```text
//! key file (80 bytes):  0        16                      48                      80
//!                       | name   | HMAC secret (unused)  | AES-256 key            |
//! ticket:               | name (16) | nonce (12) | AES-256-GCM ciphertext + tag (16) |
//! ```
//!
//! The first file's key seals; a ticket opens under whichever listed key carries its name,
//! so after a rotation to `[new, old]` tickets sealed by `old` still resume.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

use super::error::TlsError;

/// Size of one key file.
pub(crate) const KEY_FILE_LEN: usize = 80;
const NAME_LEN: usize = 16;
const AES_KEY_AT: usize = 48;
const TAG_LEN: usize = 16;
/// How long a client may keep a ticket (Envoy's and rustls' default, 12 hours).
pub(crate) const TICKET_LIFETIME_SECS: u32 = 12 * 60 * 60;
/// Longest ticket we try to open: rustls' session state with a client certificate chain is a
/// few KiB; anything far bigger is not ours.
const MAX_TICKET_LEN: usize = 16 * 1024;

struct TicketKey {
    name: [u8; NAME_LEN],
    aead: LessSafeKey,
}

/// Tickets under file keys; the first key seals.
pub(crate) struct FileTicketer {
    keys: Vec<TicketKey>,
    rng: SystemRandom,
}

impl fmt::Debug for FileTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key names only: never the secrets.
        f.debug_struct("FileTicketer")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl FileTicketer {
    /// `files`: (path for errors, contents), in config order; at least one.
    pub fn new(files: &[(String, Vec<u8>)]) -> Result<FileTicketer, TlsError> {
        let mut keys = Vec::with_capacity(files.len());
        for (path, bytes) in files {
            let bad = |reason: String| TlsError::Source {
                field: "session_ticket_keys",
                origin: path.clone(),
                reason,
            };
            if bytes.len() != KEY_FILE_LEN {
                return Err(bad(format!(
                    "{} bytes; a ticket key file holds exactly {KEY_FILE_LEN}",
                    bytes.len()
                )));
            }
            let mut name = [0u8; NAME_LEN];
            name.copy_from_slice(&bytes[..NAME_LEN]);
            let unbound = UnboundKey::new(&AES_256_GCM, &bytes[AES_KEY_AT..KEY_FILE_LEN])
                .map_err(|_| bad("unusable AES-256 key".into()))?;
            keys.push(TicketKey {
                name,
                aead: LessSafeKey::new(unbound),
            });
        }
        if keys.is_empty() {
            return Err(TlsError::Setting {
                field: "session_ticket_keys",
                reason: "no key file".into(),
            });
        }
        Ok(FileTicketer {
            keys,
            rng: SystemRandom::new(),
        })
    }
}

impl ProducesTickets for FileTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&key.name),
                &mut sealed,
            )
            .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < NAME_LEN + NONCE_LEN + TAG_LEN || ticket.len() > MAX_TICKET_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let key = self.keys.iter().find(|k| k.name == name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain_len = key
            .aead
            .open_in_place(nonce, Aad::from(&key.name), &mut buf)
            .ok()?
            .len();
        buf.truncate(plain_len);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: u8) -> (String, Vec<u8>) {
        let mut k = vec![fill; KEY_FILE_LEN];
        k[0] = fill.wrapping_add(1); // a distinct name
        (format!("/keys/{fill}"), k)
    }

    #[test]
    fn seals_with_first_and_opens_with_any_listed_key() {
        let old = FileTicketer::new(&[key(1)]).unwrap();
        let ticket = old.encrypt(b"session state").unwrap();
        assert_eq!(ticket.len(), 16 + 12 + 13 + 16);
        assert_eq!(&ticket[..16], &key(1).1[..16]);
        assert_eq!(old.decrypt(&ticket).unwrap(), b"session state");

        let rotated = FileTicketer::new(&[key(2), key(1)]).unwrap();
        assert_eq!(rotated.decrypt(&ticket).unwrap(), b"session state");
        let fresh = rotated.encrypt(b"x").unwrap();
        assert_eq!(&fresh[..16], &key(2).1[..16]);
        assert!(
            old.decrypt(&fresh).is_none(),
            "old does not know the new key"
        );

        let gone = FileTicketer::new(&[key(2)]).unwrap();
        assert!(gone.decrypt(&ticket).is_none());
        let mut tampered = fresh.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(gone.decrypt(&tampered).is_none());
        assert!(gone.decrypt(&fresh[..20]).is_none());
        assert_eq!(gone.lifetime(), 43_200);
    }

    #[test]
    fn refuses_files_of_the_wrong_size() {
        let e = FileTicketer::new(&[("/k".into(), vec![0; 79])]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "session_ticket_keys /k: 79 bytes; a ticket key file holds exactly 80"
        );
    }
}
