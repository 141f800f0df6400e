//! XML for Query API responses, as botocore's query parser reads them.

use std::fmt::Write;

/// The service's XML namespace.
pub const NAMESPACE: &str = "http://importexport.amazonaws.com/doc/2010-06-01/";

/// Escapes text for an XML element or attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all are dropped; the rest are written as is.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// Builds the body of a `<ActionResult>` element.
#[derive(Debug, Default)]
pub struct Body(String);

impl Body {
    /// An empty body.
    pub fn new() -> Self {
        Self::default()
    }

    /// `<name>text</name>`.
    pub fn text(&mut self, name: &str, text: &str) -> &mut Self {
        let _ = write!(self.0, "<{name}>{}</{name}>", escape(text));
        self
    }

    /// `<name>text</name>` when `text` is `Some`.
    pub fn opt(&mut self, name: &str, text: Option<&str>) -> &mut Self {
        if let Some(text) = text {
            self.text(name, text);
        }
        self
    }

    /// `<name>` + whatever `inner` writes + `</name>`.
    pub fn nested(&mut self, name: &str, inner: impl FnOnce(&mut Body)) -> &mut Self {
        let _ = write!(self.0, "<{name}>");
        inner(self);
        let _ = write!(self.0, "</{name}>");
        self
    }

    /// The XML text.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A whole success response: `<{action}Response><{action}Result>...`.
pub fn response(action: &str, result: Body, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{NAMESPACE}\"><{action}Result>{}</{action}Result><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        result.into_string(),
        escape(request_id)
    )
}

/// An error response.
pub fn error(kind: &str, code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        escape(kind),
        escape(code),
        escape(message),
        escape(request_id)
    )
}

/// An ISO 8601 UTC timestamp (`2010-04-17T00:09:02Z`) from seconds since the epoch.
pub fn timestamp(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_and_escaping() {
        let mut b = Body::new();
        b.text("JobId", "A<B&").nested("ArtifactList", |b| {
            b.nested("member", |b| {
                b.text("URL", "u");
            });
        });
        assert_eq!(
            response("CreateJob", b, "r1"),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateJobResponse xmlns=\"{NAMESPACE}\"><CreateJobResult><JobId>A&lt;B&amp;</JobId><ArtifactList><member><URL>u</URL></member></ArtifactList></CreateJobResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></CreateJobResponse>")
        );
        assert_eq!(timestamp(1_271_462_942), "2010-04-17T00:09:02Z");
        assert_eq!(escape("a\u{1}b\r"), "ab&#13;");
    }
}
