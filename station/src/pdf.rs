//! The station's documents: the EBS/Glacier job PDF with its Code 128 signature barcode, and
//! the shipping label. A small PDF writer of our own (Helvetica text and filled rectangles is
//! all these pages need).

use std::fmt::Write;

/// Page size: US Letter, in points.
const PAGE_WIDTH: f64 = 612.0;
const PAGE_HEIGHT: f64 = 792.0;
const MARGIN: f64 = 54.0;

/// One page's drawing operations.
#[derive(Default)]
struct Page {
    ops: String,
    /// Where the next line of text goes.
    y: f64,
}

impl Page {
    fn new() -> Self {
        Self {
            ops: String::new(),
            y: PAGE_HEIGHT - MARGIN,
        }
    }

    fn line(&mut self, text: &str, size: f64, bold: bool) {
        self.y -= size * 1.35;
        let font = if bold { "F2" } else { "F1" };
        let _ = writeln!(
            self.ops,
            "BT /{font} {size} Tf {MARGIN} {:.2} Td ({}) Tj ET",
            self.y,
            pdf_string(text)
        );
    }

    fn gap(&mut self, points: f64) {
        self.y -= points;
    }

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64) {
        let _ = writeln!(self.ops, "{x:.3} {y:.3} {w:.3} {h:.3} re f");
    }

    /// A Code 128 barcode of `text`, as wide as the text column, with its text below.
    fn barcode(&mut self, text: &str) {
        let modules = code128(text);
        let total: u32 = modules.iter().map(|&m| u32::from(m)).sum::<u32>() + 20;
        let width = PAGE_WIDTH - 2.0 * MARGIN;
        let module = width / f64::from(total);
        let height = 72.0;
        self.y -= height + 8.0;
        let mut x = MARGIN + 10.0 * module;
        for (i, &m) in modules.iter().enumerate() {
            let w = f64::from(m) * module;
            if i % 2 == 0 {
                self.rect(x, self.y, w, height);
            }
            x += w;
        }
        self.line(text, 9.0, false);
    }
}

/// A PDF string literal's contents: WinAnsi bytes, with `\`, `(` and `)` escaped and
/// characters outside Latin-1 written as `?`.
fn pdf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            c if (0xA0..=0xFF).contains(&(c as u32)) => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            _ => out.push('?'),
        }
    }
    out
}

/// Assembles pages into a PDF file.
fn document(pages: &[Page]) -> Vec<u8> {
    let mut objects: Vec<String> = Vec::new();
    // 1: catalog, 2: pages, 3: Helvetica, 4: Helvetica-Bold, then page + content pairs.
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", 5 + 2 * i))
        .collect();
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        kids.join(" "),
        pages.len()
    ));
    objects.push(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".into(),
    );
    objects.push(
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"
            .into(),
    );
    for (i, page) in pages.iter().enumerate() {
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {} 0 R >>",
            6 + 2 * i
        ));
        objects.push(format!(
            "<< /Length {} >>\nstream\n{}endstream",
            page.ops.len(),
            page.ops
        ));
    }
    let mut out = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        let _ = write!(out, "{} 0 obj\n{object}\nendobj\n", i + 1);
    }
    let xref = out.len();
    let _ = write!(out, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        let _ = writeln!(out, "{offset:010} 00000 n ");
    }
    let _ = write!(
        out,
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    );
    out.into_bytes()
}

/// What the EBS/Glacier job PDF says.
pub struct ImportInstructions<'a> {
    /// The station's name.
    pub station: &'a str,
    /// The job.
    pub job_id: &'a str,
    /// The manifest's deviceId.
    pub device_id: &'a str,
    /// The target region.
    pub region: &'a str,
    /// "an Amazon EBS snapshot" or "an Amazon Glacier archive".
    pub destination: &'a str,
    /// `1.0:JOBID:SIGNATURE`.
    pub barcode: &'a str,
}

/// The PDF for an EBS or Glacier job: identification, instructions and the barcode.
pub fn import_instructions(doc: &ImportInstructions<'_>) -> Vec<u8> {
    let mut page = Page::new();
    page.line("AWS Import/Export", 20.0, true);
    page.line(&format!("Job {} - {}", doc.job_id, doc.station), 14.0, true);
    page.gap(8.0);
    page.line(&format!("JOB ID: {}", doc.job_id), 12.0, false);
    page.line(&format!("DEVICE ID: {}", doc.device_id), 12.0, false);
    page.line(&format!("REGION: {}", doc.region), 12.0, false);
    page.gap(8.0);
    for text in [
        format!(
            "The whole device will be imported as {} in {}.",
            doc.destination, doc.region
        ),
        "1. Print this page and cut out the barcode below.".to_owned(),
        "2. Tape the barcode securely to the device (not to its power supply or cables)."
            .to_owned(),
        "3. Pack the device with its power supply and cables, and ship it with the job's label."
            .to_owned(),
        "A device without this barcode cannot be loaded; it is returned as it came.".to_owned(),
        "After the import every writable block of the device is overwritten with zeros.".to_owned(),
    ] {
        page.line(&text, 11.0, false);
    }
    page.gap(24.0);
    page.barcode(doc.barcode);
    document(&[page])
}

/// A sender's address on a shipping label.
pub struct Address {
    /// Name.
    pub name: String,
    /// Company.
    pub company: String,
    /// street1, street2, street3.
    pub street: [String; 3],
    /// City.
    pub city: String,
    /// State or province.
    pub state_or_province: String,
    /// Postal code.
    pub postal_code: String,
    /// Country.
    pub country: String,
    /// Phone number.
    pub phone: String,
}

/// A shipping label from `sender` to the station, one page per job.
pub fn shipping_label(station: &str, sender: &Address, job_ids: &[&str]) -> Vec<u8> {
    let pages: Vec<Page> = job_ids
        .iter()
        .map(|job_id| {
            let mut page = Page::new();
            page.line("SHIPPING LABEL", 20.0, true);
            page.gap(8.0);
            page.line("FROM:", 11.0, true);
            for line in [
                sender.name.as_str(),
                sender.company.as_str(),
                sender.street[0].as_str(),
                sender.street[1].as_str(),
                sender.street[2].as_str(),
                &format!(
                    "{} {} {}",
                    sender.city, sender.state_or_province, sender.postal_code
                ),
                sender.country.as_str(),
                sender.phone.as_str(),
            ] {
                if !line.trim().is_empty() {
                    page.line(line.trim(), 11.0, false);
                }
            }
            page.gap(12.0);
            page.line("TO:", 11.0, true);
            page.line(&format!("AWS Import/Export - {station}"), 14.0, false);
            page.line(&format!("JOBID {job_id}"), 14.0, true);
            page.gap(24.0);
            page.barcode(job_id);
            page
        })
        .collect();
    document(&pages)
}

/// Code 128 bar and space widths, in modules, of each symbol value (0..=105), and the stop.
const PATTERNS: [&str; 107] = [
    "212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312", "132212",
    "221213", "221312", "231212", "112232", "122132", "122231", "113222", "123122", "123221",
    "223211", "221132", "221231", "213212", "223112", "312131", "311222", "321122", "321221",
    "312212", "322112", "322211", "212123", "212321", "232121", "111323", "131123", "131321",
    "112313", "132113", "132311", "211313", "231113", "231311", "112133", "112331", "132131",
    "113123", "113321", "133121", "313121", "211331", "231131", "213113", "213311", "213131",
    "311123", "311321", "331121", "312113", "312311", "332111", "314111", "221411", "431111",
    "111224", "111422", "121124", "121421", "141122", "141221", "112214", "112412", "122114",
    "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111", "111242",
    "121142", "121241", "114212", "124112", "124211", "411212", "421112", "421211", "212141",
    "214121", "412121", "111143", "111341", "131141", "114113", "114311", "411113", "411311",
    "113141", "114131", "311141", "411131", "211412", "211214", "211232", "2331112",
];
const START_B: usize = 104;
const STOP: usize = 106;

/// The module widths (bar, space, bar, ...) of `text` in Code 128 code set B; characters
/// outside ASCII 32-127 are written as `?`.
pub fn code128(text: &str) -> Vec<u8> {
    let values: Vec<usize> = text
        .chars()
        .map(|c| match c {
            ' '..='\u{7f}' => c as usize - 32,
            _ => '?' as usize - 32,
        })
        .collect();
    let checksum = values
        .iter()
        .enumerate()
        .fold(START_B, |sum, (i, v)| sum + (i + 1) * v)
        % 103;
    let mut widths = Vec::new();
    for symbol in std::iter::once(START_B)
        .chain(values)
        .chain([checksum, STOP])
    {
        widths.extend(PATTERNS[symbol].bytes().map(|b| b - b'0'));
    }
    widths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_is_eleven_modules_and_unique() {
        for (i, p) in PATTERNS.iter().enumerate() {
            let sum: u32 = p.bytes().map(|b| u32::from(b - b'0')).sum();
            assert_eq!(sum, if i == STOP { 13 } else { 11 }, "pattern {i}");
        }
        let mut sorted = PATTERNS.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), PATTERNS.len());
    }

    #[test]
    fn check_symbol_is_the_weighted_sum_mod_103() {
        // "PJJ123C": 104 + 1*48 + 2*42 + 3*42 + 4*17 + 5*18 + 6*19 + 7*35 = 879; 879 mod 103 = 55.
        let w = code128("PJJ123C");
        // Start, 7 characters, check symbol (6 widths each), then the 7-width stop.
        assert_eq!(w.len(), 9 * 6 + 7);
        let check = &w[w.len() - 7 - 6..w.len() - 7];
        let digits: String = check.iter().map(|d| char::from(b'0' + d)).collect();
        assert_eq!(digits, PATTERNS[55]);
    }

    #[test]
    fn documents_are_pdfs() {
        let pdf = import_instructions(&ImportInstructions {
            station: "dock (1)",
            job_id: "ABCDE",
            device_id: "49382",
            region: "us-east-1",
            destination: "an Amazon Glacier archive",
            barcode: "1.0:ABCDE:abc=",
        });
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.starts_with("%PDF-1.4"));
        assert!(text.contains("(JOB ID: ABCDE)"));
        assert!(text.contains("dock \\(1\\)"));
        assert!(text.ends_with("%%EOF\n"));
    }
}
