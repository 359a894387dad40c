//! WeCom callback encryption (WXBizMsgCrypt), as the WeCom server API specifies it for
//! callbacks ("加解密方案说明", developer.work.weixin.qq.com/document/path/90968) and as
//! independent clients implement it (wechatpy `wechatpy/crypto`, go-workwx
//! `internal/lowlevel/encryptor`):
//!
//! - `msg_signature` = lowercase hex SHA-1 of the token, the timestamp, the nonce and the
//!   base64 ciphertext, sorted as byte strings and concatenated.
//! - key = base64-decode(EncodingAESKey + "="): 43 characters give 32 bytes (AES-256);
//!   IV = the key's first 16 bytes; CBC mode.
//! - plaintext = 16 random bytes ‖ message length (4 bytes, big-endian) ‖ message ‖
//!   receiver id (the corp id for a corp's own apps), padded PKCS#7-style to a multiple
//!   of **32** bytes (not AES's 16), then base64.
//!
//! Everything here is pure: the random prefix is an argument, so tests and the
//! simulator are deterministic where they need to be.

use aes::Aes256;
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha1::{Digest, Sha1};

/// WXBizMsgCrypt pads to this block size.
const PAD_BLOCK: usize = 32;
/// Random prefix + length field.
const HEADER: usize = 20;

/// Decoding as WeCom's own sample code and wechatpy do (Python's `b64decode`): the last
/// character's unused bits need not be zero. Consoles hand out EncodingAESKeys whose
/// 43rd character leaves such bits set; a strict decoder would refuse a valid key.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Why a callback was refused. The webhook answers 401 to every one of them and acts on
/// none; the text never carries the token or the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "the EncodingAESKey must be 43 characters of base64 (it decodes, with '=' appended, to 32 bytes); check the callback Secret"
    )]
    BadKey,
    #[error("the callback Token is empty; set it in the callback Secret")]
    EmptyToken,
    #[error("msg_signature does not match (wrong Token, or the body was altered)")]
    BadSignature,
    #[error("the ciphertext is not base64")]
    NotBase64,
    #[error("the ciphertext is not a whole number of AES blocks, or its padding is wrong")]
    BadCiphertext,
    #[error("the decrypted length field ({0}) runs past the end of the plaintext")]
    BadLength(u32),
    #[error("the message is addressed to {got:?}, not to this corp ({want:?})")]
    WrongReceiver { got: String, want: String },
    #[error("the message is not UTF-8")]
    NotUtf8,
}

/// One corp's callback settings: the Token and EncodingAESKey registered in the WeCom
/// admin console, and the receiver id (the corp id).
#[derive(Clone)]
pub struct CallbackCrypto {
    token: String,
    key: [u8; 32],
    receiver_id: String,
}

impl std::fmt::Debug for CallbackCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackCrypto")
            .field("token", &"<redacted>")
            .field("key", &"<redacted>")
            .field("receiver_id", &self.receiver_id)
            .finish()
    }
}

impl CallbackCrypto {
    pub fn new(
        token: &str,
        encoding_aes_key: &str,
        receiver_id: &str,
    ) -> Result<Self, CryptoError> {
        if token.is_empty() {
            return Err(CryptoError::EmptyToken);
        }
        if encoding_aes_key.len() != 43 {
            return Err(CryptoError::BadKey);
        }
        let bytes = LENIENT
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| CryptoError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(CallbackCrypto {
            token: token.to_string(),
            key,
            receiver_id: receiver_id.to_string(),
        })
    }

    pub fn receiver_id(&self) -> &str {
        &self.receiver_id
    }

    /// `msg_signature` for these values.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypted: &str) -> String {
        let mut parts = [self.token.as_str(), timestamp, nonce, encrypted];
        parts.sort_unstable();
        let mut sha = Sha1::new();
        for p in parts {
            sha.update(p.as_bytes());
        }
        hex::encode(sha.finalize())
    }

    /// Checks `msg_signature` (constant time) and decrypts: the URL-verification GET's
    /// `echostr`, or a POST's `<Encrypt>`.
    pub fn open(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypted: &str,
    ) -> Result<String, CryptoError> {
        let expected = self.signature(timestamp, nonce, encrypted);
        if !crate::provider::constant_time_eq(
            expected.as_bytes(),
            msg_signature.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(CryptoError::BadSignature);
        }
        self.decrypt(encrypted)
    }

    /// Decrypts a base64 ciphertext and checks its receiver id. No signature check: use
    /// [`open`](Self::open) for anything that arrived from the network.
    pub fn decrypt(&self, encrypted: &str) -> Result<String, CryptoError> {
        let data = LENIENT
            .decode(encrypted.trim())
            .map_err(|_| CryptoError::NotBase64)?;
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(CryptoError::BadCiphertext);
        }
        let plain = cbc::Decryptor::<Aes256>::new(&self.key.into(), self.key[..16].into())
            .decrypt_padded_vec_mut::<NoPadding>(&data)
            .map_err(|_| CryptoError::BadCiphertext)?;
        let plain = unpad(&plain)?;
        if plain.len() < HEADER {
            return Err(CryptoError::BadCiphertext);
        }
        let len = u32::from_be_bytes([plain[16], plain[17], plain[18], plain[19]]);
        let end = HEADER
            .checked_add(len as usize)
            .filter(|end| *end <= plain.len())
            .ok_or(CryptoError::BadLength(len))?;
        let receiver = &plain[end..];
        if receiver != self.receiver_id.as_bytes() {
            return Err(CryptoError::WrongReceiver {
                got: String::from_utf8_lossy(receiver).into_owned(),
                want: self.receiver_id.clone(),
            });
        }
        String::from_utf8(plain[HEADER..end].to_vec()).map_err(|_| CryptoError::NotUtf8)
    }

    /// Encrypts `message` for this receiver with the given random prefix; base64.
    pub fn encrypt(&self, message: &str, random: [u8; 16]) -> String {
        let mut plain = Vec::with_capacity(HEADER + message.len() + self.receiver_id.len() + 32);
        plain.extend_from_slice(&random);
        plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
        plain.extend_from_slice(message.as_bytes());
        plain.extend_from_slice(self.receiver_id.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let data = cbc::Encryptor::<Aes256>::new(&self.key.into(), self.key[..16].into())
            .encrypt_padded_vec_mut::<NoPadding>(&plain);
        STANDARD.encode(data)
    }

    /// A callback POST body as WeCom sends it, and the query's `msg_signature`.
    pub fn seal(&self, message: &str, timestamp: &str, nonce: &str, random: [u8; 16]) -> Sealed {
        let encrypted = self.encrypt(message, random);
        let msg_signature = self.signature(timestamp, nonce, &encrypted);
        let body = format!(
            "<xml><ToUserName><![CDATA[{}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>",
            self.receiver_id
        );
        Sealed {
            body,
            encrypted,
            msg_signature,
        }
    }
}

/// A sealed callback: the XML body, its ciphertext and the signature for the query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub body: String,
    pub encrypted: String,
    pub msg_signature: String,
}

/// Strips the 32-byte-block PKCS#7 padding; every pad byte must carry the pad length.
fn unpad(plain: &[u8]) -> Result<&[u8], CryptoError> {
    let pad = *plain.last().ok_or(CryptoError::BadCiphertext)? as usize;
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return Err(CryptoError::BadCiphertext);
    }
    let (body, tail) = plain.split_at(plain.len() - pad);
    if tail.iter().any(|b| *b as usize != pad) {
        return Err(CryptoError::BadCiphertext);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors below are public test data: the example corp of wechatpy's test suite
    // (tests/test_enterprise_crypto.py), itself taken from WeCom's sample code. They
    // were produced by implementations other than ours.
    const TOKEN: &str = "123456";
    const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const CORP: &str = "wx49f0ab532d5d035a";

    fn crypto() -> CallbackCrypto {
        CallbackCrypto::new(TOKEN, KEY, CORP).unwrap()
    }

    #[test]
    fn a_url_verification_signed_by_another_implementation_opens() {
        let echo = "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==";
        let out = crypto()
            .open(
                "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96",
                "1411443780",
                "437374425",
                echo,
            )
            .unwrap();
        assert!(!out.is_empty());
        // One nonce digit changed: the signature no longer matches.
        assert_eq!(
            crypto().open(
                "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96",
                "1411443780",
                "437374424",
                echo
            ),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn a_callback_encrypted_by_another_implementation_decrypts() {
        let encrypted = "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=";
        let msg = crypto()
            .open(
                "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
                "1411525903",
                "461056294",
                encrypted,
            )
            .unwrap();
        assert!(msg.contains("<Content><![CDATA[test]]></Content>"), "{msg}");
        assert!(msg.contains("<FromUserName><![CDATA[messense]]>"), "{msg}");
    }

    #[test]
    fn our_encryption_matches_another_implementation_byte_for_byte() {
        let reply = "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>";
        let sealed = crypto().seal(reply, "1411525903", "461056294", *b"1234567890123456");
        assert_eq!(
            sealed.encrypted,
            "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
        );
        assert_eq!(
            sealed.msg_signature,
            "407518b7649e86ef23978113f92d27afa9296533"
        );
    }

    #[test]
    fn seal_and_open_round_trip_any_text() {
        let c = crypto();
        for msg in [
            "",
            "a",
            "市场二组",
            "VIP客户 🚀团队 مرحبا",
            &"x".repeat(31),
            &"y".repeat(32),
            &"z".repeat(1000),
        ] {
            let s = c.seal(msg, "1700000000", "n0nce", [7; 16]);
            assert_eq!(
                c.open(&s.msg_signature, "1700000000", "n0nce", &s.encrypted)
                    .unwrap(),
                msg
            );
            assert_eq!(STANDARD.decode(&s.encrypted).unwrap().len() % PAD_BLOCK, 0);
        }
    }

    #[test]
    fn a_message_for_another_corp_is_refused_even_with_a_good_signature() {
        let other = CallbackCrypto::new(TOKEN, KEY, "wwothercorp").unwrap();
        let s = other.seal("<xml/>", "1", "2", [1; 16]);
        assert_eq!(
            crypto().open(&s.msg_signature, "1", "2", &s.encrypted),
            Err(CryptoError::WrongReceiver {
                got: "wwothercorp".into(),
                want: CORP.into()
            })
        );
    }

    #[test]
    fn tampered_or_malformed_ciphertexts_are_refused() {
        let c = crypto();
        let s = c.seal("<xml>hello</xml>", "1", "2", [3; 16]);
        // Signed over the tampered text: the signature holds, the plaintext does not.
        let mut bytes = STANDARD.decode(&s.encrypted).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        let tampered = STANDARD.encode(&bytes);
        let sig = c.signature("1", "2", &tampered);
        assert!(c.open(&sig, "1", "2", &tampered).is_err());
        // Altered after signing: refused on the signature.
        assert_eq!(
            c.open(&s.msg_signature, "1", "2", &tampered),
            Err(CryptoError::BadSignature)
        );
        for junk in ["not base64!", "", "AAAA"] {
            let sig = c.signature("1", "2", junk);
            assert!(c.open(&sig, "1", "2", junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn keys_and_tokens_are_checked_and_never_printed() {
        assert_eq!(
            CallbackCrypto::new(TOKEN, "short", CORP).unwrap_err(),
            CryptoError::BadKey
        );
        assert_eq!(
            CallbackCrypto::new(TOKEN, &"!".repeat(43), CORP).unwrap_err(),
            CryptoError::BadKey
        );
        assert_eq!(
            CallbackCrypto::new("", KEY, CORP).unwrap_err(),
            CryptoError::EmptyToken
        );
        let shown = format!("{:?}", crypto());
        assert!(!shown.contains(TOKEN) && !shown.contains(KEY), "{shown}");
        assert!(shown.contains(CORP));
    }

    #[test]
    fn padding_is_checked_byte_by_byte() {
        assert!(unpad(&[1, 2, 3, 3, 3]).is_ok());
        assert_eq!(unpad(&[1, 2, 3, 2, 3]), Err(CryptoError::BadCiphertext));
        assert_eq!(unpad(&[0]), Err(CryptoError::BadCiphertext));
        assert_eq!(unpad(&[33; 40]), Err(CryptoError::BadCiphertext));
        assert_eq!(unpad(&[]), Err(CryptoError::BadCiphertext));
    }
}
