//! The Go influx-proxy's `auth_encrypt` cipher, byte for byte, so an
//! encrypted `proxy.json` keeps working: AES-128-CBC with key and IV both
//! the ASCII `consistentcipher`, the plaintext zero-padded to a whole block,
//! and base64 with the alphabet `A-Z a-z 0-9 _ !` and no `=` padding.
//!
//! It is obfuscation, not protection: the key is public. Decryption strips
//! NUL bytes at both ends; text that does not decode gives an error.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

const KEY: &[u8; 16] = b"consistentcipher";

type Enc = cbc::Encryptor<aes::Aes128>;
type Dec = cbc::Decryptor<aes::Aes128>;

fn engine() -> Option<GeneralPurpose> {
    let alphabet = base64::alphabet::Alphabet::new(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_!",
    )
    .ok()?;
    let config = GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);
    Some(GeneralPurpose::new(&alphabet, config))
}

/// Encrypts `plain`; empty stays empty.
pub fn encrypt(plain: &str) -> String {
    if plain.is_empty() {
        return String::new();
    }
    let mut buf = plain.as_bytes().to_vec();
    let pad = 16 - buf.len() % 16;
    buf.resize(buf.len() + pad, 0);
    let n = buf.len();
    let out = match Enc::new(KEY.into(), KEY.into()).encrypt_padded_mut::<NoPadding>(&mut buf, n) {
        Ok(out) => out.to_vec(),
        Err(_) => return String::new(),
    };
    engine().map(|e| e.encode(out)).unwrap_or_default()
}

/// Decrypts `text`; an error message when it is not valid cipher text.
pub fn decrypt(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Ok(String::new());
    }
    let engine = engine().ok_or("cipher alphabet")?;
    let mut buf = engine
        .decode(text)
        .map_err(|e| format!("illegal base64 data: {e}"))?;
    if buf.is_empty() || buf.len() % 16 != 0 {
        return Err("crypto/cipher: input not full blocks".into());
    }
    let plain = Dec::new(KEY.into(), KEY.into())
        .decrypt_padded_mut::<NoPadding>(&mut buf)
        .map_err(|_| "crypto/cipher: decryption failed".to_string())?;
    let trimmed: &[u8] = {
        let start = plain.iter().position(|&b| b != 0).unwrap_or(plain.len());
        let end = plain.iter().rposition(|&b| b != 0).map_or(start, |e| e + 1);
        &plain[start..end]
    };
    Ok(String::from_utf8_lossy(trimmed).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_go_proxy_documented_value() {
        assert_eq!(encrypt("admin"), "YgvEyuPZlDYAH8sGDkC!Ag");
        assert_eq!(decrypt("YgvEyuPZlDYAH8sGDkC!Ag").unwrap(), "admin");
    }

    #[test]
    fn round_trips_and_refuses_garbage() {
        for s in [
            "p",
            "password123",
            "0123456789abcdef",
            "ünïcode-пароль",
            &"x".repeat(100),
        ] {
            assert_eq!(decrypt(&encrypt(s)).unwrap(), s);
        }
        assert_eq!(encrypt(""), "");
        assert_eq!(decrypt("").unwrap(), "");
        assert!(decrypt("not base64 ***").is_err());
        assert!(decrypt("YWJj").is_err());
    }
}
