//! E-mail: messages are composed as RFC 5322 text when queued (so what is sent is exactly
//! what was stored), and [`run_outbox`] hands the outbox to the SMTP server, retrying with
//! backoff until it takes each one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use base64::Engine;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::Notify;

use crate::config::{NotificationConfig, SmtpTls};
use crate::store::{now, OutboxMessage, Store};

/// A header value with line breaks and other control characters removed (no header
/// injection), and non-ASCII text as an RFC 2047 encoded word.
fn header_value(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.is_ascii() {
        clean
    } else {
        format!(
            "=?utf-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(clean)
        )
    }
}

/// The whole message: headers, and the UTF-8 body in base64 (any text, any line length).
pub fn compose(from: &str, to: &str, subject: &str, body: &str, station: &str) -> String {
    let date = httpdate::fmt_http_date(SystemTime::now()).replace("GMT", "+0000");
    let id = format!(
        "<{}.{}@{}>",
        now(),
        rand::random::<u64>(),
        header_value(station).replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "")
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
    let mut text = format!(
        "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {date}\r\nMessage-ID: {id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        header_value(from),
        header_value(to),
        header_value(subject),
    );
    for line in encoded.as_bytes().chunks(76) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push_str("\r\n");
    }
    text
}

/// The SMTP connection the configuration describes; `None` without a server.
///
/// # Errors
///
/// The password file cannot be read or the server name is not valid for TLS.
pub fn transport(
    n: &NotificationConfig,
) -> anyhow::Result<Option<AsyncSmtpTransport<Tokio1Executor>>> {
    let Some(server) = n.smtp_server.as_deref() else {
        return Ok(None);
    };
    let mut builder = match n.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(server)
            .with_context(|| {
                format!("notifications.smtp_server `{server}`: cannot set up STARTTLS")
            })?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(server)
            .with_context(|| format!("notifications.smtp_server `{server}`: cannot set up TLS"))?,
    }
    .port(n.port())
    .timeout(Some(Duration::from_secs(30)));
    if let Some(user) = &n.username {
        let password = match &n.password_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| {
                    format!(
                        "notifications.password_file {}: cannot read it",
                        path.display()
                    )
                })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok(Some(builder.build()))
}

async fn send(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    m: &OutboxMessage,
) -> anyhow::Result<()> {
    let from: Address = m
        .sender
        .parse()
        .with_context(|| format!("sender `{}`", m.sender))?;
    let to: Address = m
        .recipient
        .parse()
        .with_context(|| format!("recipient `{}`", m.recipient))?;
    let envelope = Envelope::new(Some(from), vec![to]).context("envelope")?;
    transport
        .send_raw(&envelope, m.message.as_bytes())
        .await
        .map(|_| ())
        .map_err(anyhow::Error::from)
}

/// Seconds to wait after `attempts` failed attempts: 2, 4, 8, ... up to `max`.
pub fn backoff(attempts: u32, max: u64) -> u64 {
    2u64.saturating_pow(attempts.saturating_add(1).min(30))
        .min(max.max(1))
}

/// Sends the outbox forever through `transport`: each due message is offered to the server;
/// a refusal or an outage leaves it queued for a later attempt, at most `retry_max_secs` on.
pub async fn run_outbox(
    store: Store,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    retry_max_secs: u64,
    wake: Arc<Notify>,
) {
    // The outage that delayed the queued messages may be over.
    if let Err(e) = store.retry_mail_now() {
        tracing::error!(error = %e, "outbox");
    }
    loop {
        let due = store.due_mail(now(), 50).unwrap_or_else(|e| {
            tracing::error!(error = %e, "outbox");
            Vec::new()
        });
        for m in &due {
            match send(&transport, m).await {
                Ok(()) => {
                    tracing::info!(to = %m.recipient, subject = %m.subject, "e-mail sent");
                    if let Err(e) = store.mail_sent(m.id) {
                        tracing::error!(error = %e, "cannot mark an e-mail sent");
                    }
                }
                Err(e) => {
                    let wait = backoff(m.attempts, retry_max_secs);
                    tracing::warn!(to = %m.recipient, error = format!("{e:#}"), retry_in_secs = wait, "e-mail not sent");
                    if let Err(e) = store.mail_failed(
                        m.id,
                        &format!("{e:#}"),
                        now() + i64::try_from(wait).unwrap_or(i64::MAX / 2),
                    ) {
                        tracing::error!(error = %e, "outbox");
                    }
                }
            }
        }
        let wait = match store.next_mail_due() {
            Ok(Some(at)) => {
                Duration::from_secs(u64::try_from(at - now()).unwrap_or(0).clamp(1, 60))
            }
            _ => Duration::from_secs(60),
        };
        let _ = tokio::time::timeout(wait, wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_cannot_be_injected_and_bodies_are_base64() {
        let text = compose(
            "a@b.c",
            "x@y.z\r\nBcc: evil@example.com",
            "Job ü\nX",
            "héllo\n",
            "st 1",
        );
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(text.contains("Subject: =?utf-8?B?"), "{text}");
        let body = text
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .replace("\r\n", "");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded, "héllo\n".as_bytes());
    }

    #[test]
    fn every_tls_mode_builds_a_transport() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let password = dir.path().join("password");
        std::fs::write(&password, "pw\n").unwrap_or_else(|e| panic!("{e}"));
        let mut n = NotificationConfig::default();
        assert!(transport(&n).unwrap_or_else(|e| panic!("{e}")).is_none());
        n.smtp_server = Some("smtp.example.net".into());
        n.username = Some("station".into());
        n.password_file = Some(password);
        for tls in [SmtpTls::None, SmtpTls::Starttls, SmtpTls::Tls] {
            n.tls = tls;
            assert!(transport(&n).unwrap_or_else(|e| panic!("{e:#}")).is_some());
        }
        n.password_file = Some(dir.path().join("missing"));
        let e = transport(&n)
            .err()
            .unwrap_or_else(|| panic!("a missing password file is an error"));
        assert!(
            format!("{e:#}").contains("notifications.password_file"),
            "{e:#}"
        );
        assert_eq!(NotificationConfig::default().port(), 587);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(0, 300), 2);
        assert_eq!(backoff(1, 300), 4);
        assert_eq!(backoff(7, 300), 256);
        assert_eq!(backoff(8, 300), 300);
        assert_eq!(backoff(u32::MAX, 300), 300);
    }
}
