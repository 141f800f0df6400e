//! Request authentication: AWS Signature Version 4 (what current `aws importexport` clients
//! send: service `IngestionService`, no body-hash header) and Version 2 (the guide's examples).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// How far a request's time may be from the station's clock.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// The parts of a request that signatures cover.
pub struct SignedRequest<'a> {
    /// `POST` or `GET`.
    pub method: &'a str,
    /// The path, as sent (`/`).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// Headers, names lowercased, in order.
    pub headers: &'a [(String, String)],
    /// The body, as sent.
    pub body: &'a [u8],
    /// The decoded parameters of query and body.
    pub params: &'a [(String, String)],
}

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Which access key signed a request, before its secret is known.
pub enum Claim {
    /// Signature Version 4.
    V4 {
        /// The access key ID.
        access_key_id: String,
    },
    /// Signature Version 2.
    V2 {
        /// The access key ID.
        access_key_id: String,
    },
}

impl Claim {
    /// The access key ID the request names.
    pub fn access_key_id(&self) -> &str {
        match self {
            Self::V4 { access_key_id } | Self::V2 { access_key_id } => access_key_id,
        }
    }
}

/// Finds which key the request claims to be signed with.
///
/// # Errors
///
/// The request carries no signature.
pub fn claim(req: &SignedRequest<'_>) -> Result<Claim, ApiError> {
    if let Some(auth) = req.header("authorization") {
        let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
            return Err(ApiError::signature_mismatch(
                "the Authorization header is not AWS4-HMAC-SHA256",
            ));
        };
        let fields = parse_v4_authorization(rest)?;
        let access_key_id = fields.credential.split('/').next().unwrap_or("").to_owned();
        return Ok(Claim::V4 { access_key_id });
    }
    if let Some(key) = req.param("AWSAccessKeyId") {
        return Ok(Claim::V2 {
            access_key_id: key.to_owned(),
        });
    }
    Err(ApiError::missing_authentication())
}

struct V4Fields {
    credential: String,
    signed_headers: String,
    signature: String,
}

fn parse_v4_authorization(rest: &str) -> Result<V4Fields, ApiError> {
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v.to_owned());
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v.to_owned());
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v.to_owned());
        }
    }
    match (credential, signed_headers, signature) {
        (Some(credential), Some(signed_headers), Some(signature)) => Ok(V4Fields {
            credential,
            signed_headers,
            signature,
        }),
        _ => Err(ApiError::signature_mismatch(
            "the Authorization header lacks Credential, SignedHeaders or Signature",
        )),
    }
}

/// Verifies the request's signature with `secret`, against the station's clock `now`.
///
/// # Errors
///
/// The signature does not match, or the request's time is too far off.
pub fn verify(
    req: &SignedRequest<'_>,
    claim: &Claim,
    secret: &[u8],
    now: i64,
) -> Result<(), ApiError> {
    match claim {
        Claim::V4 { .. } => verify_v4(req, secret, now),
        Claim::V2 { .. } => verify_v2(req, secret, now),
    }
}

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 encoding as SigV4 and SigV2 want it: unreserved characters as is, the rest `%XX`.
fn uri_encode(text: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (b == b'/' && !encode_slash) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn canonical_query(query: &str, skip: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| Some(k.as_ref()) != skip)
        .map(|(k, v)| (uri_encode(&k, true), uri_encode(&v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Parses an ISO 8601 basic time `20261125T003556Z` into seconds since the epoch.
fn parse_amz_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
    civil_to_unix(
        num(0..4)?,
        num(4..6)?,
        num(6..8)?,
        num(9..11)?,
        num(11..13)?,
        num(13..15)?,
    )
}

/// Parses ISO 8601 extended time (`2011-06-20T18:49:14.981Z`, SigV2's Timestamp).
fn parse_iso8601(text: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> { text.get(r)?.parse().ok() };
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[10] != b'T' || !text.ends_with('Z') {
        return None;
    }
    civil_to_unix(
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    )
}

fn civil_to_unix(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn check_skew(time: i64, now: i64, shown: &str) -> Result<(), ApiError> {
    if (time - now).abs() > MAX_SKEW_SECONDS {
        return Err(ApiError::request_expired(shown));
    }
    Ok(())
}

fn verify_v4(req: &SignedRequest<'_>, secret: &[u8], now: i64) -> Result<(), ApiError> {
    let auth = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("AWS4-HMAC-SHA256 "))
        .ok_or_else(ApiError::missing_authentication)?;
    let fields = parse_v4_authorization(auth)?;
    let scope_parts: Vec<&str> = fields.credential.splitn(2, '/').collect();
    let scope = scope_parts.get(1).copied().unwrap_or("");
    let parts: Vec<&str> = scope.split('/').collect();
    let [date, region, service, "aws4_request"] = parts.as_slice() else {
        return Err(ApiError::signature_mismatch(
            "the credential scope is not DATE/REGION/SERVICE/aws4_request",
        ));
    };
    if !["IngestionService", "importexport"].contains(service) {
        return Err(ApiError::signature_mismatch(&format!(
            "the credential scope names service `{service}`, not IngestionService"
        )));
    }
    let amz_date = req
        .header("x-amz-date")
        .ok_or_else(|| ApiError::signature_mismatch("the X-Amz-Date header is missing"))?;
    let time = parse_amz_date(amz_date)
        .ok_or_else(|| ApiError::signature_mismatch("X-Amz-Date is not YYYYMMDDTHHMMSSZ"))?;
    if !amz_date.starts_with(date) {
        return Err(ApiError::signature_mismatch(
            "the credential scope's date is not X-Amz-Date's",
        ));
    }
    check_skew(time, now, amz_date)?;

    let mut canonical_headers = String::new();
    for name in fields.signed_headers.split(';') {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(ApiError::signature_mismatch(&format!(
                "signed header `{name}` is missing"
            )));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    // Clients that send a body hash sign it; the rest (awscli v1 here) leave it to us.
    let body_hash = match req.header("x-amz-content-sha256") {
        Some(h) => h.to_owned(),
        None => hex::encode(Sha256::digest(req.body)),
    };
    let path = if req.path.is_empty() { "/" } else { req.path };
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(&percent_decode(path), false),
        canonical_query(req.query, None),
        canonical_headers,
        fields.signed_headers,
        body_hash
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut k = [b"AWS4".as_slice(), secret].concat();
    for part in [*date, *region, *service, "aws4_request"] {
        k = hmac256(&k, part.as_bytes());
    }
    let expected = hex::encode(hmac256(&k, string_to_sign.as_bytes()));
    if constant_time_eq(expected.as_bytes(), fields.signature.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::signature_mismatch("Signature Version 4"))
    }
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn verify_v2(req: &SignedRequest<'_>, secret: &[u8], now: i64) -> Result<(), ApiError> {
    let version = req.param("SignatureVersion").unwrap_or("");
    if version != "2" {
        return Err(ApiError::signature_mismatch(&format!(
            "SignatureVersion `{version}` is not 2"
        )));
    }
    let signature = req
        .param("Signature")
        .ok_or_else(|| ApiError::signature_mismatch("the Signature parameter is missing"))?;
    if let Some(ts) = req.param("Timestamp") {
        let time = parse_iso8601(ts)
            .ok_or_else(|| ApiError::signature_mismatch("Timestamp is not ISO 8601 UTC"))?;
        check_skew(time, now, ts)?;
    } else if let Some(expires) = req.param("Expires") {
        let time = parse_iso8601(expires)
            .ok_or_else(|| ApiError::signature_mismatch("Expires is not ISO 8601 UTC"))?;
        if now > time {
            return Err(ApiError::request_expired(expires));
        }
    } else {
        return Err(ApiError::signature_mismatch(
            "Timestamp or Expires is required",
        ));
    }
    let host = req.header("host").unwrap_or("").to_ascii_lowercase();
    let mut pairs: Vec<(String, String)> = req
        .params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let path = if req.path.is_empty() { "/" } else { req.path };
    let string_to_sign = format!("{}\n{host}\n{path}\n{query}", req.method);
    let expected = match req.param("SignatureMethod").unwrap_or("HmacSHA256") {
        "HmacSHA256" => hmac256(secret, string_to_sign.as_bytes()),
        "HmacSHA1" => {
            let mut mac =
                <Hmac<Sha1> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
            mac.update(string_to_sign.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        other => {
            return Err(ApiError::signature_mismatch(&format!(
                "SignatureMethod `{other}` is not HmacSHA256 or HmacSHA1"
            )))
        }
    };
    let expected = base64::engine::general_purpose::STANDARD.encode(expected);
    if constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::signature_mismatch("Signature Version 2"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_amz_date("20261125T003556Z"), Some(1_795_566_956));
        assert_eq!(
            parse_iso8601("2011-06-20T18:49:14.981Z"),
            Some(1_308_595_754)
        );
        assert_eq!(parse_amz_date("2026-11-25"), None);
    }

    /// The AWS SigV4 test suite's `post-x-www-form-urlencoded` case.
    #[test]
    fn sigv4_reference_vector() {
        let headers = vec![
            ("content-type".to_owned(), "application/x-www-form-urlencoded".to_owned()),
            ("host".to_owned(), "example.amazonaws.com".to_owned()),
            ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
            (
                "authorization".to_owned(),
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/IngestionService/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=SIG".to_owned(),
            ),
        ];
        let body = b"Param1=value1";
        // Compute what a correct client would send, then check tampering is caught.
        let secret = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let req = |headers: &[(String, String)], body: &[u8]| -> Result<(), ApiError> {
            let params = vec![("Param1".to_owned(), "value1".to_owned())];
            let r = SignedRequest {
                method: "POST",
                path: "/",
                query: "",
                headers,
                body,
                params: &params,
            };
            verify_v4(&r, secret, parse_amz_date("20150830T123600Z").unwrap_or(0))
        };
        // Find the right signature by recomputing (the function under test is the only signer).
        let canonical = format!(
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n{}",
            hex::encode(Sha256::digest(body))
        );
        let sts = format!(
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/IngestionService/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut k = [b"AWS4".as_slice(), secret].concat();
        for part in ["20150830", "us-east-1", "IngestionService", "aws4_request"] {
            k = hmac256(&k, part.as_bytes());
        }
        let sig = hex::encode(hmac256(&k, sts.as_bytes()));
        let mut good = headers.clone();
        good[3].1 = good[3].1.replace("SIG", &sig);
        assert_eq!(req(&good, body), Ok(()));
        assert_eq!(
            req(&good, b"Param1=value2").map_err(|e| e.code),
            Err("SignatureDoesNotMatch".to_owned())
        );
        assert_eq!(
            req(&headers, body).map_err(|e| e.code),
            Err("SignatureDoesNotMatch".to_owned())
        );
    }
}
