//! From the raw manifest to the validated model: required fields, types and the guide's rules.
//!
//! Validation reports every problem it finds, not just the first, so a customer can fix a
//! manifest in one round; each error names the field, the line and what to do.

use super::country;
use super::date::HttpDate;
use super::error::{ManifestError, ManifestErrorCode as Code};
use super::model::*;
use super::raw::{Entry, Item, Scalar, Value};
use super::secret::Secret;
use super::Rules;

/// S3's limit on the UTF-8 length of a key.
pub const MAX_KEY_BYTES: usize = 1024;
/// Glacier's limit on an archive description, as the guide gives it for archiveComment.
pub const MAX_ARCHIVE_COMMENT_CHARS: usize = 997;
/// S3's limit on the user-defined metadata of one object (keys and values, in bytes).
pub const MAX_USER_METADATA_BYTES: usize = 2048;
/// TrueCrypt 7.1a's longest password.
pub const MAX_TRUECRYPT_PASSWORD_BYTES: usize = 64;
/// The guide's customs limit on the device's value, in US cents.
pub const MAX_DEVICE_VALUE_CENTS: u64 = 250_000;
/// The length of an RFC 1123 date as S3 writes it, for the metadata size check.
const HTTP_DATE_LEN: usize = 29;

const COMMON_FIELDS: &[&str] = &[
    "accessKeyId",
    "customs",
    "deviceId",
    "generator",
    "logBucket",
    "logPrefix",
    "manifestVersion",
    "notificationEmail",
    "returnAddress",
    "serviceLevel",
];
const S3_IMPORT_FIELDS: &[&str] = &[
    "acl",
    "bucket",
    "cacheControl",
    "contentDisposition",
    "contentLanguage",
    "contentTypes",
    "defaultContentType",
    "diskTimestampMetadataKey",
    "eraseDevice",
    "expires",
    "ignore",
    "pinCode",
    "prefix",
    "setContentEncodingForGzFiles",
    "staticMetadata",
    "storageClass",
    "substitutions",
    "trueCryptPassword",
];
const IMAGE_IMPORT_FIELDS: &[&str] = &["eraseDevice", "operations", "pinCode"];
const S3_EXPORT_FIELDS: &[&str] = &[
    "fileSystem",
    "operations",
    "pinCode",
    "recoveryDirectory",
    "substitutions",
    "targetDirectory",
    "trueCryptPassword",
];
const ADDRESS_FIELDS: &[&str] = &[
    "name",
    "company",
    "street1",
    "street2",
    "street3",
    "city",
    "stateOrProvince",
    "postalCode",
    "phoneNumber",
    "country",
];
const CUSTOMS_FIELDS: &[&str] = &[
    "dataDescription",
    "encryptedData",
    "encryptionClassification",
    "exportCertifierName",
    "requiresExportLicense",
    "deviceValue",
    "deviceCountryOfOrigin",
    "deviceType",
    "deviceHTS",
    "typeOfExport",
];
const EBS_OPERATION_FIELDS: &[&str] = &[
    "destination",
    "source",
    "region",
    "deviceCapacityGreaterThan1TB",
];
const GLACIER_OPERATION_FIELDS: &[&str] = &[
    "destination",
    "source",
    "region",
    "vaultName",
    "archiveComment",
];
const EXPORT_OPERATION_FIELDS: &[&str] = &[
    "exportBucket",
    "prefix",
    "beginMarker",
    "endMarker",
    "targetDirectory",
];
const EBS_REGIONS: &[Region] = &Region::ALL;
const GLACIER_REGIONS: &[Region] = &[
    Region::UsEast1,
    Region::UsWest1,
    Region::UsWest2,
    Region::EuWest1,
];

/// Validates the top-level entries of a manifest for a job of `job_type`.
pub(crate) fn validate(
    entries: &[Entry],
    job_type: JobType,
    rules: &Rules,
) -> Result<Manifest, Vec<ManifestError>> {
    let mut v = Validator {
        errors: Vec::new(),
        rules,
    };
    let manifest = v.manifest(entries, job_type);
    match manifest {
        Some(m) if v.errors.is_empty() => Ok(m),
        _ => Err(v.errors),
    }
}

/// The entries of one block map, with the keys already read marked.
struct Fields<'a> {
    entries: &'a [Entry],
    used: Vec<bool>,
    /// The path of the map (`returnAddress`, `operations[1]`); empty at the top.
    path: String,
    /// The map's line (for "missing" errors), if it has one.
    line: Option<usize>,
}

impl<'a> Fields<'a> {
    fn new(entries: &'a [Entry], path: impl Into<String>, line: Option<usize>) -> Self {
        Self {
            entries,
            used: vec![false; entries.len()],
            path: path.into(),
            line,
        }
    }

    fn take(&mut self, key: &str) -> Option<&'a Entry> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        self.used[i] = true;
        Some(&self.entries[i])
    }

    fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn unused(&self) -> impl Iterator<Item = &'a Entry> + '_ {
        self.entries
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| !**used)
            .map(|(e, _)| e)
    }
}

struct Validator<'r> {
    errors: Vec<ManifestError>,
    rules: &'r Rules,
}

impl Validator<'_> {
    fn error(&mut self, code: Code, field: &str, line: Option<usize>, message: impl Into<String>) {
        self.errors
            .push(ManifestError::new(code, field, line, message));
    }

    fn manifest(&mut self, entries: &[Entry], job_type: JobType) -> Option<Manifest> {
        let mut top = Fields::new(entries, "", None);
        let version = self.manifest_version(&mut top);
        let kind = self.kind(&top, job_type, version)?;
        let common = self.common(&mut top, kind);
        let job = match kind {
            JobKind::S3Import => self
                .s3_import(&mut top)
                .map(|s| JobManifest::S3Import(Box::new(s))),
            JobKind::EbsImport => self.ebs_import(&mut top).map(JobManifest::EbsImport),
            JobKind::GlacierImport => self
                .glacier_import(&mut top)
                .map(JobManifest::GlacierImport),
            JobKind::S3Export => self.s3_export(&mut top).map(JobManifest::S3Export),
        };
        self.unknown_fields(&top, kind);
        Some(Manifest {
            common: common?,
            job: job?,
        })
    }

    // ---- kind and version -------------------------------------------------------------

    fn manifest_version(&mut self, top: &mut Fields) -> Option<(ManifestVersion, usize)> {
        let (text, line) =
            self.required_scalar(top, "manifestVersion", Code::MissingManifestField)?;
        // The guide's own example writes `manifestVersion: 2.0;`.
        let trimmed = text.strip_suffix(';').unwrap_or(&text).trim();
        match trimmed {
            "2.0" => Some((ManifestVersion::V2_0, line)),
            "3.0" => Some((ManifestVersion::V3_0, line)),
            _ => {
                self.error(
                    Code::InvalidManifestField,
                    "manifestVersion",
                    Some(line),
                    format!(
                        "`{trimmed}` is not a manifest version. Write 2.0 for S3 import and export, 3.0 for EBS and Glacier import."
                    ),
                );
                None
            }
        }
    }

    /// Decides the job's kind from the JobType and the manifest, and checks the version.
    fn kind(
        &mut self,
        top: &Fields,
        job_type: JobType,
        version: Option<(ManifestVersion, usize)>,
    ) -> Option<JobKind> {
        let kind = match job_type {
            JobType::Export => JobKind::S3Export,
            JobType::Import => match self.import_destination(top) {
                Some(kind) => kind,
                None if matches!(version, Some((ManifestVersion::V3_0, _)))
                    && !top.has("operations") =>
                {
                    self.error(
                        Code::MissingManifestField,
                        "operations",
                        None,
                        "an EBS or Glacier import (manifestVersion 3.0) needs `operations` with one entry giving destination, source and region.",
                    );
                    return None;
                }
                None if top.has("operations")
                    && !top.has("bucket")
                    && self.has_destination(top) =>
                {
                    // import_destination already reported the bad destination.
                    return None;
                }
                None => JobKind::S3Import,
            },
        };
        let (version, line) = version?;
        if version != kind.manifest_version() {
            let name = match kind {
                JobKind::S3Import => "an S3 import",
                JobKind::EbsImport => "an EBS import",
                JobKind::GlacierImport => "a Glacier import",
                JobKind::S3Export => "an S3 export",
            };
            self.error(
                Code::InvalidManifestField,
                "manifestVersion",
                Some(line),
                format!(
                    "{name} manifest has manifestVersion {}, not {}. Set `manifestVersion: {}`.",
                    kind.manifest_version().as_str(),
                    version.as_str(),
                    kind.manifest_version().as_str()
                ),
            );
            return None;
        }
        Some(kind)
    }

    fn has_destination(&self, top: &Fields) -> bool {
        let Some(Entry {
            value: Value::List(items),
            ..
        }) = top.entries.iter().find(|e| e.key == "operations")
        else {
            return false;
        };
        items.iter().any(|item| match &item.value {
            Value::Map(op) => op.iter().any(|e| e.key == "destination"),
            _ => false,
        })
    }

    /// EBS or Glacier when the import's operations name a destination; `None` otherwise.
    fn import_destination(&mut self, top: &Fields) -> Option<JobKind> {
        let Some(Entry {
            value: Value::List(items),
            ..
        }) = top.entries.iter().find(|e| e.key == "operations")
        else {
            return None;
        };
        let mut kinds = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let Value::Map(op) = &item.value else {
                continue;
            };
            let Some(dest) = op.iter().find(|e| e.key == "destination") else {
                continue;
            };
            let field = format!("operations[{i}].destination");
            match &dest.value {
                Value::Scalar(s) if s.text.eq_ignore_ascii_case("ebs-snapshot") => {
                    kinds.push(JobKind::EbsImport)
                }
                Value::Scalar(s) if s.text.eq_ignore_ascii_case("glacier") => {
                    kinds.push(JobKind::GlacierImport)
                }
                Value::Scalar(s) => {
                    self.error(
                        Code::InvalidManifestField,
                        &field,
                        Some(dest.line),
                        format!(
                            "`{}` is not a destination. Write `ebs-snapshot` for an EBS import or `glacier` for a Glacier import.",
                            s.text
                        ),
                    );
                    return None;
                }
                other => {
                    self.error(
                        Code::InvalidManifestField,
                        &field,
                        Some(dest.line),
                        format!(
                            "destination must be a single value, not {}. Write `ebs-snapshot` or `glacier`.",
                            other.shape()
                        ),
                    );
                    return None;
                }
            }
        }
        let first = *kinds.first()?;
        if kinds.iter().any(|k| *k != first) {
            self.error(
                Code::InvalidManifestField,
                "operations",
                None,
                "the operations mix ebs-snapshot and glacier destinations; one device is imported to one destination. Create one job per destination.",
            );
            return None;
        }
        Some(first)
    }

    fn unknown_fields(&mut self, top: &Fields, kind: JobKind) {
        let own: &[&str] = match kind {
            JobKind::S3Import => S3_IMPORT_FIELDS,
            JobKind::EbsImport | JobKind::GlacierImport => IMAGE_IMPORT_FIELDS,
            JobKind::S3Export => S3_EXPORT_FIELDS,
        };
        let what = match kind {
            JobKind::S3Import => "an S3 import manifest",
            JobKind::EbsImport => "an EBS import manifest",
            JobKind::GlacierImport => "a Glacier import manifest",
            JobKind::S3Export => "an S3 export manifest",
        };
        let known: Vec<&str> = COMMON_FIELDS.iter().chain(own).copied().collect();
        for entry in top.unused().collect::<Vec<_>>() {
            let key = &entry.key;
            let hint = if let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(key)) {
                format!(" Option names are case-sensitive: did you mean `{k}`?")
            } else if S3_IMPORT_FIELDS.contains(&key.as_str())
                || IMAGE_IMPORT_FIELDS.contains(&key.as_str())
                || S3_EXPORT_FIELDS.contains(&key.as_str())
            {
                format!(" `{key}` belongs to another kind of job; check the JobType and manifestVersion, or remove it.")
            } else if ADDRESS_FIELDS.contains(&key.as_str()) {
                format!(" `{key}` belongs under `returnAddress:`, indented.")
            } else if CUSTOMS_FIELDS.contains(&key.as_str()) {
                format!(" `{key}` belongs under `customs:`, indented.")
            } else {
                " Remove it, or check its spelling against the guide's option reference.".to_owned()
            };
            self.error(
                Code::InvalidManifestField,
                key,
                Some(entry.line),
                format!("`{key}` is not an option of {what}.{hint}"),
            );
        }
    }

    // ---- common options -----------------------------------------------------------------

    fn common(&mut self, top: &mut Fields, kind: JobKind) -> Option<Common> {
        let device_id = self.device_id(top);
        let generator = self.optional_text(top, "generator");
        let access_key_id = self.optional_text(top, "accessKeyId");
        let log_bucket = if kind == JobKind::S3Import {
            self.optional_scalar(top, "logBucket")
                .and_then(|(t, l)| self.bucket_name("logBucket", &t, l))
        } else {
            self.required_scalar(top, "logBucket", Code::MissingManifestField)
                .and_then(|(t, l)| self.bucket_name("logBucket", &t, l))
        };
        let log_prefix = self.log_prefix(top, kind);
        let notification_email = self.notification_email(top);
        let return_address = self.return_address(top);
        let service_level = self.service_level(top, return_address.as_ref());
        let customs = self.customs(top, return_address.as_ref());
        Some(Common {
            manifest_version: kind.manifest_version(),
            device_id: device_id?,
            generator,
            access_key_id,
            log_bucket: match (kind, log_bucket) {
                (JobKind::S3Import, b) => b,
                (_, Some(b)) => Some(b),
                (_, None) => return None,
            },
            log_prefix: log_prefix?,
            notification_email: notification_email?,
            return_address: return_address?,
            service_level: service_level?,
            customs: customs?,
        })
    }

    fn device_id(&mut self, top: &mut Fields) -> Option<String> {
        let (text, line) = self.required_scalar(top, "deviceId", Code::MissingManifestField)?;
        if text.chars().count() > 128 || text.chars().any(char::is_control) {
            self.error(
                Code::InvalidManifestField,
                "deviceId",
                Some(line),
                "deviceId must be the device's serial number or sticker label: at most 128 characters, no control characters.",
            );
            return None;
        }
        Some(text)
    }

    fn log_prefix(&mut self, top: &mut Fields, kind: JobKind) -> Option<String> {
        let Some((prefix, line)) = self.optional_scalar(top, "logPrefix") else {
            return Some(String::new());
        };
        let word = if kind.is_import() {
            "import-log-"
        } else {
            "export-log-"
        };
        let total = prefix.len() + word.len() + self.rules.job_id_len;
        if total > MAX_KEY_BYTES {
            self.error(
                Code::InvalidManifestField,
                "logPrefix",
                Some(line),
                format!(
                    "logPrefix + \"{word}\" + the job ID is {total} bytes; an S3 key is at most {MAX_KEY_BYTES}. Shorten logPrefix by {} bytes.",
                    total - MAX_KEY_BYTES
                ),
            );
            return None;
        }
        Some(prefix)
    }

    fn notification_email(&mut self, top: &mut Fields) -> Option<Vec<String>> {
        let (text, line) =
            self.required_scalar(top, "notificationEmail", Code::MissingManifestField)?;
        let mut addresses = Vec::new();
        for part in text.split(';') {
            let address = part.trim();
            if address.is_empty() {
                continue;
            }
            if !is_email_address(address) {
                self.error(
                    Code::InvalidManifestField,
                    "notificationEmail",
                    Some(line),
                    format!(
                        "`{address}` is not an e-mail address. Write addresses like jane.roe@example.com, separated by `;`."
                    ),
                );
                return None;
            }
            addresses.push(address.to_owned());
        }
        if addresses.is_empty() {
            self.error(
                Code::MissingManifestField,
                "notificationEmail",
                Some(line),
                "notificationEmail has no address. Give at least one, separated by `;`.",
            );
            return None;
        }
        Some(addresses)
    }

    fn return_address(&mut self, top: &mut Fields) -> Option<ReturnAddress> {
        let Some(entry) = top.take("returnAddress") else {
            self.error(
                Code::MissingManifestField,
                "returnAddress",
                None,
                "returnAddress is required: the street address we ship the device back to, with name, street1, city, postalCode, phoneNumber and country indented under it.",
            );
            return None;
        };
        let mut f = self.sub_map(entry, "returnAddress", Code::InvalidAddress)?;
        let missing = Code::MissingManifestField;
        let name = self.required_text(&mut f, "name", missing);
        let company = self.optional_text(&mut f, "company");
        let street1 = self.required_text(&mut f, "street1", missing);
        let street2 = self.optional_text(&mut f, "street2");
        let street3 = self.optional_text(&mut f, "street3");
        let city = self.required_text(&mut f, "city", missing);
        let state_or_province = self.optional_text(&mut f, "stateOrProvince");
        let postal_code = self.required_text(&mut f, "postalCode", missing);
        let phone_number = self.required_text(&mut f, "phoneNumber", missing);
        let country_line = f
            .entries
            .iter()
            .find(|e| e.key == "country")
            .map(|e| e.line);
        let country = self.required_text(&mut f, "country", missing);
        self.unknown_subfields(&f, ADDRESS_FIELDS, Code::InvalidAddress);

        let country_code = match &country {
            Some(c) => match country::country_code(c) {
                Some(code) => Some(code),
                None => {
                    self.error(
                        Code::InvalidAddress,
                        "returnAddress.country",
                        country_line,
                        format!(
                            "`{c}` is not a country we know. Write the country's English name or its ISO 3166 code (USA, US, India, IE)."
                        ),
                    );
                    None
                }
            },
            None => None,
        };
        if let Some(code) = country_code {
            if (code == "US" || code == "CA") && state_or_province.is_none() {
                self.error(
                    Code::InvalidAddress,
                    "returnAddress.stateOrProvince",
                    f.line,
                    "stateOrProvince is required for addresses in the USA and Canada. Add it under returnAddress.",
                );
            }
        }
        for (key, street) in [
            ("street1", &street1),
            ("street2", &street2),
            ("street3", &street3),
        ] {
            if let Some(street) = street {
                if is_po_box(street) {
                    let line = f.entries.iter().find(|e| e.key == key).map(|e| e.line);
                    self.error(
                        Code::InvalidAddress,
                        &format!("returnAddress.{key}"),
                        line,
                        format!(
                            "`{street}` is a post office box; we return devices only to a physical street address. Give a street address."
                        ),
                    );
                }
            }
        }
        Some(ReturnAddress {
            name: name?,
            company,
            street1: street1?,
            street2,
            street3,
            city: city?,
            state_or_province,
            postal_code: postal_code?,
            phone_number: phone_number?,
            country: country?,
            country_code: country_code?,
        })
    }

    fn service_level(
        &mut self,
        top: &mut Fields,
        address: Option<&ReturnAddress>,
    ) -> Option<ServiceLevel> {
        let Some((text, line)) = self.optional_scalar(top, "serviceLevel") else {
            return Some(ServiceLevel::Standard);
        };
        let level = self.one_of(
            "serviceLevel",
            &text,
            line,
            &[
                ("standard", ServiceLevel::Standard),
                ("expeditedShipping", ServiceLevel::ExpeditedShipping),
            ],
            Code::InvalidManifestField,
        )?;
        if level == ServiceLevel::ExpeditedShipping {
            let to_us = address.map(|a| a.country_code == "US");
            if self.rules.facility_country != "US" || to_us == Some(false) {
                self.error(
                    Code::InvalidManifestField,
                    "serviceLevel",
                    Some(line),
                    format!(
                        "expeditedShipping is available only from a US facility to a US address (this facility is in {}). Use `serviceLevel: standard`.",
                        self.rules.facility_country
                    ),
                );
                return None;
            }
        }
        Some(level)
    }

    fn customs(
        &mut self,
        top: &mut Fields,
        address: Option<&ReturnAddress>,
    ) -> Option<Option<Customs>> {
        let facility = self.rules.facility_country.as_str();
        let required = address.is_some_and(|a| {
            a.country_code != facility
                && !(country::is_eu(a.country_code) && country::is_eu(facility))
        });
        let Some(entry) = top.take("customs") else {
            if required {
                let to = address.map(|a| a.country.as_str()).unwrap_or("");
                self.error(
                    Code::MissingCustoms,
                    "customs",
                    None,
                    format!(
                        "the device returns to {to}, outside this facility's country ({facility}): add the `customs` option with its subfields."
                    ),
                );
            }
            // Without a usable address we cannot say; the address error is reported.
            return if required { None } else { Some(None) };
        };
        let mut f = self.sub_map(entry, "customs", Code::InvalidCustoms)?;
        let missing = Code::MissingCustoms;
        let data_description = self.required_text(&mut f, "dataDescription", missing);
        let encrypted_data =
            self.required_bool(&mut f, "encryptedData", missing, Code::InvalidCustoms);
        let encryption_classification = self.optional_text(&mut f, "encryptionClassification");
        let export_certifier_name = self.required_text(&mut f, "exportCertifierName", missing);
        let requires_export_license = self.required_bool(
            &mut f,
            "requiresExportLicense",
            missing,
            Code::InvalidCustoms,
        );
        let device_value_cents = self
            .required_scalar(&mut f, "deviceValue", missing)
            .and_then(|(t, l)| self.device_value(&t, l));
        let device_country_of_origin = self.required_text(&mut f, "deviceCountryOfOrigin", missing);
        let device_type = self
            .required_scalar(&mut f, "deviceType", missing)
            .and_then(|(t, l)| {
                self.one_of(
                    "customs.deviceType",
                    &t,
                    l,
                    &[
                        ("externalStorageDevice", DeviceType::ExternalStorageDevice),
                        ("usbFlashDrive", DeviceType::UsbFlashDrive),
                        ("sataDrive", DeviceType::SataDrive),
                    ],
                    Code::InvalidCustoms,
                )
            });
        let device_hts = match self.optional_scalar(&mut f, "deviceHTS") {
            Some((t, l)) => {
                let digits = t.chars().filter(char::is_ascii_digit).count();
                if digits != 10 || !t.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    self.error(
                        Code::InvalidCustoms,
                        "customs.deviceHTS",
                        Some(l),
                        format!("`{t}` is not a 10-digit HTS code. Write it like 8471.70.4000, or leave deviceHTS out to use the device type's code."),
                    );
                    None
                } else {
                    Some(Some(t))
                }
            }
            None => Some(None),
        };
        let type_of_export = match self.optional_scalar(&mut f, "typeOfExport") {
            Some((t, l)) => self.one_of(
                "customs.typeOfExport",
                &t,
                l,
                &[
                    ("return", TypeOfExport::Return),
                    ("permanent", TypeOfExport::Permanent),
                    ("temporary", TypeOfExport::Temporary),
                ],
                Code::InvalidCustoms,
            ),
            None => Some(TypeOfExport::Return),
        };
        self.unknown_subfields(&f, CUSTOMS_FIELDS, Code::InvalidCustoms);
        if encrypted_data == Some(true) && encryption_classification.is_none() {
            self.error(
                Code::MissingCustoms,
                "customs.encryptionClassification",
                f.line,
                "encryptedData is yes, so encryptionClassification is required (for example 5D992).",
            );
            return None;
        }
        let device_type = device_type?;
        Some(Some(Customs {
            data_description: data_description?,
            encrypted_data: encrypted_data?,
            encryption_classification,
            export_certifier_name: export_certifier_name?,
            requires_export_license: requires_export_license?,
            device_value_cents: device_value_cents?,
            device_country_of_origin: device_country_of_origin?,
            device_type,
            device_hts: device_hts?.unwrap_or_else(|| device_type.default_hts().to_owned()),
            type_of_export: type_of_export?,
        }))
    }

    fn device_value(&mut self, text: &str, line: usize) -> Option<u64> {
        let cents = parse_money_cents(text);
        match cents {
            Some(c) if c < MAX_DEVICE_VALUE_CENTS => Some(c),
            Some(_) => {
                self.error(
                    Code::InvalidCustoms,
                    "customs.deviceValue",
                    Some(line),
                    format!(
                        "the device's value ({text} US dollars) must be less than 2500.00 for international shipping. Send a less valuable device."
                    ),
                );
                None
            }
            None => {
                self.error(
                    Code::InvalidCustoms,
                    "customs.deviceValue",
                    Some(line),
                    format!(
                        "`{text}` is not an amount in US dollars. Write a number such as 250.00."
                    ),
                );
                None
            }
        }
    }

    // ---- S3 import ----------------------------------------------------------------------

    fn s3_import(&mut self, top: &mut Fields) -> Option<S3Import> {
        let erase = self.erase_device(top);
        let bucket = self
            .required_scalar(top, "bucket", Code::MissingManifestField)
            .and_then(|(t, l)| self.bucket_name("bucket", &t, l));
        let acl = match self.optional_scalar(top, "acl") {
            Some((t, l)) => self.one_of(
                "acl",
                &t,
                l,
                &[
                    ("private", CannedAcl::Private),
                    ("public-read", CannedAcl::PublicRead),
                    ("public-read-write", CannedAcl::PublicReadWrite),
                    ("authenticated-read", CannedAcl::AuthenticatedRead),
                ],
                Code::InvalidManifestField,
            ),
            None => Some(CannedAcl::Private),
        };
        let storage_class = match self.optional_scalar(top, "storageClass") {
            Some((t, l)) => self.one_of(
                "storageClass",
                &t,
                l,
                &[
                    ("STANDARD", StorageClass::Standard),
                    ("REDUCED_REDUNDANCY", StorageClass::ReducedRedundancy),
                ],
                Code::InvalidManifestField,
            ),
            None => Some(StorageClass::Standard),
        };
        let cache_control = self.header_value(top, "cacheControl");
        let content_disposition = self.header_value(top, "contentDisposition");
        let content_language = self.header_value(top, "contentLanguage");
        let content_types = self.content_types(top);
        let default_content_type = match self.optional_scalar(top, "defaultContentType") {
            Some((t, l)) => self.media_type("defaultContentType", &t, l).map(Some),
            None => Some(None),
        };
        let expires = match self.optional_scalar(top, "expires") {
            Some((t, l)) => match HttpDate::parse(&t) {
                Ok(d) => Some(Some(d)),
                Err(why) => {
                    self.error(
                        Code::InvalidManifestField,
                        "expires",
                        Some(l),
                        format!("{why}. expires takes an RFC 1123 date such as `Thu, 07 Jan 2010 16:00:00 GMT`."),
                    );
                    None
                }
            },
            None => Some(None),
        };
        let ignore = self.ignore(top);
        let pin_code = self.pin_code(top);
        let true_crypt_password = self.true_crypt_password(top);
        let prefix = match self.optional_scalar(top, "prefix") {
            Some((t, l)) => self.key_part("prefix", t, l),
            None => Some(String::new()),
        };
        let set_gz = match self.optional_scalar(top, "setContentEncodingForGzFiles") {
            Some((t, l)) => self.boolean(
                "setContentEncodingForGzFiles",
                &t,
                l,
                Code::InvalidManifestField,
            ),
            None => Some(false),
        };
        let disk_key = match self.optional_scalar(top, "diskTimestampMetadataKey") {
            Some((t, l)) => self
                .metadata_key("diskTimestampMetadataKey", &t, l)
                .map(Some),
            None => Some(None),
        };
        let static_metadata = self.static_metadata(top);
        let substitutions = self.substitutions(top);

        if let (Some(Some(disk)), Some(meta)) = (&disk_key, &static_metadata) {
            if let Some((k, _)) = meta.iter().find(|(k, _)| k.eq_ignore_ascii_case(disk)) {
                let line = top
                    .entries
                    .iter()
                    .find(|e| e.key == "diskTimestampMetadataKey")
                    .map(|e| e.line);
                self.error(
                    Code::InvalidManifestField,
                    "diskTimestampMetadataKey",
                    line,
                    format!("`{disk}` is also a staticMetadata key (`{k}`); metadata names are case-insensitive. Choose another name."),
                );
            }
        }
        if let (Some(disk), Some(meta)) = (&disk_key, &static_metadata) {
            let mut total: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
            if let Some(d) = disk {
                total += d.len() + HTTP_DATE_LEN;
            }
            if total > MAX_USER_METADATA_BYTES {
                let line = top
                    .entries
                    .iter()
                    .find(|e| e.key == "staticMetadata")
                    .map(|e| e.line);
                self.error(
                    Code::InvalidManifestField,
                    "staticMetadata",
                    line,
                    format!("the metadata of each object would be {total} bytes; S3 allows {MAX_USER_METADATA_BYTES}. Shorten or remove entries."),
                );
            }
        }
        if let (Some(prefix), Some(subs)) = (&prefix, &substitutions) {
            self.whole_value_emptied(top, subs, "prefix", prefix);
        }
        erase?;
        Some(S3Import {
            bucket: bucket?,
            acl: acl?,
            cache_control: cache_control?,
            content_disposition: content_disposition?,
            content_language: content_language?,
            content_types: content_types?,
            default_content_type: default_content_type?,
            disk_timestamp_metadata_key: disk_key?,
            expires: expires?,
            ignore: ignore?,
            pin_code: pin_code?,
            prefix: prefix?,
            set_content_encoding_for_gz_files: set_gz?,
            static_metadata: static_metadata?,
            storage_class: storage_class?,
            substitutions: substitutions?,
            true_crypt_password: true_crypt_password?,
        })
    }

    fn erase_device(&mut self, top: &mut Fields) -> Option<()> {
        let Some((text, line)) = self.optional_scalar(top, "eraseDevice") else {
            self.error(
                Code::MissingManifestField,
                "eraseDevice",
                None,
                "every import device is erased after the import, even a failed one: add `eraseDevice: yes` to acknowledge it.",
            );
            return None;
        };
        if text.eq_ignore_ascii_case("yes") || text.eq_ignore_ascii_case("true") {
            Some(())
        } else {
            self.error(
                Code::InvalidManifestField,
                "eraseDevice",
                Some(line),
                format!(
                    "eraseDevice is `{text}`; it must be yes (or true): the station overwrites every import device with zeros after loading it. Copy what you need to keep before you ship the device."
                ),
            );
            None
        }
    }

    fn content_types(&mut self, top: &mut Fields) -> Option<Vec<(String, String)>> {
        let Some(entry) = top.take("contentTypes") else {
            return Some(Vec::new());
        };
        let f = self.sub_map(entry, "contentTypes", Code::InvalidManifestField)?;
        let mut out: Vec<(String, String, usize)> = Vec::new();
        let mut ok = true;
        for e in f.entries {
            let field = format!("contentTypes.{}", e.key);
            let ext = e.key.strip_prefix('.').unwrap_or(&e.key);
            if ext.is_empty() || ext.contains(['/', '.']) || ext.chars().any(char::is_whitespace) {
                self.error(
                    Code::InvalidManifestField,
                    &field,
                    Some(e.line),
                    format!("`{}` is not a file extension. Write the extension without the dot, like `jpg: image/jpeg`.", e.key),
                );
                ok = false;
                continue;
            }
            let Some(value) = self.scalar_value(e, &field, Code::InvalidManifestField) else {
                ok = false;
                continue;
            };
            let Some(media) = self.media_type(&field, &value, e.line) else {
                ok = false;
                continue;
            };
            // The reference says the keys are case-insensitive; `jpg` and `JPG` with one
            // type are the same rule, with two types they are a contradiction.
            if let Some((prev_ext, prev_type, prev_line)) =
                out.iter().find(|(x, _, _)| x.eq_ignore_ascii_case(ext))
            {
                if !prev_type.eq_ignore_ascii_case(&media) {
                    self.error(
                        Code::InvalidManifestField,
                        &field,
                        Some(e.line),
                        format!(
                            "`{}` and `{prev_ext}` (line {prev_line}) give different types; extensions are matched case-insensitively. Keep one.",
                            e.key
                        ),
                    );
                    ok = false;
                }
                continue;
            }
            out.push((ext.to_ascii_lowercase(), media, e.line));
        }
        ok.then(|| out.into_iter().map(|(x, t, _)| (x, t)).collect())
    }

    fn ignore(&mut self, top: &mut Fields) -> Option<Vec<IgnorePattern>> {
        let Some(entry) = top.take("ignore") else {
            return Some(Vec::new());
        };
        let items: &[Item] = match &entry.value {
            Value::Empty => return Some(Vec::new()),
            Value::List(items) => items,
            other => {
                self.error(
                    Code::InvalidManifestField,
                    "ignore",
                    Some(entry.line),
                    format!(
                        "ignore must be a list, not {}: write each pattern on its own line under `ignore:` as `  - pattern`.",
                        other.shape()
                    ),
                );
                return None;
            }
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let field = format!("ignore[{i}]");
            let Value::Scalar(Scalar { text, .. }) = &item.value else {
                self.error(
                    Code::InvalidManifestField,
                    &field,
                    Some(item.line),
                    "each ignore entry must be one regular expression. Quote a pattern that contains `: `.",
                );
                ok = false;
                continue;
            };
            match compile_java_regex(text) {
                Ok(regex) => out.push(IgnorePattern::new(text.clone(), regex)),
                Err(why) => {
                    self.error(
                        Code::InvalidManifestField,
                        &field,
                        Some(item.line),
                        format!(
                            "`{text}` is not a valid Java regular expression: {why}. Fix the pattern (escape literal characters such as `.` and `$` with a backslash)."
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn static_metadata(&mut self, top: &mut Fields) -> Option<Vec<(String, String)>> {
        let Some(entry) = top.take("staticMetadata") else {
            return Some(Vec::new());
        };
        let f = self.sub_map(entry, "staticMetadata", Code::InvalidManifestField)?;
        let mut out: Vec<(String, String)> = Vec::new();
        let mut ok = true;
        for e in f.entries {
            let field = format!("staticMetadata.{}", e.key);
            let key = self.metadata_key(&field, &e.key, e.line);
            let value = self.scalar_value(e, &field, Code::InvalidManifestField);
            let (Some(key), Some(value)) = (key, value) else {
                ok = false;
                continue;
            };
            if !value.chars().all(|c| c == '\t' || (' '..='~').contains(&c)) {
                self.error(
                    Code::InvalidManifestField,
                    &field,
                    Some(e.line),
                    "metadata values must be printable ASCII (S3 sends them as HTTP headers). Remove the other characters.",
                );
                ok = false;
                continue;
            }
            if let Some((k, _)) = out.iter().find(|(k, _)| k.eq_ignore_ascii_case(&key)) {
                self.error(
                    Code::InvalidManifestField,
                    &field,
                    Some(e.line),
                    format!("`{key}` and `{k}` are the same metadata name (names are case-insensitive). Keep one."),
                );
                ok = false;
                continue;
            }
            out.push((key, value));
        }
        ok.then_some(out)
    }

    fn substitutions(&mut self, top: &mut Fields) -> Option<Substitutions> {
        let Some(entry) = top.take("substitutions") else {
            return Some(Substitutions::default());
        };
        let f = self.sub_map(entry, "substitutions", Code::InvalidManifestField)?;
        let mut rules = Vec::new();
        let mut ok = true;
        for e in f.entries {
            let field = format!("substitutions.{}", e.key);
            if e.key.is_empty() {
                self.error(
                    Code::InvalidManifestField,
                    "substitutions",
                    Some(e.line),
                    "a substitution replaces an empty string, which matches everywhere. Give the text to replace on the left of the colon.",
                );
                ok = false;
                continue;
            }
            let to = match &e.value {
                Value::Empty => Some(String::new()),
                _ => self.scalar_value(e, &field, Code::InvalidManifestField),
            };
            match to {
                Some(to) if to.contains('\0') => {
                    self.error(
                        Code::InvalidManifestField,
                        &field,
                        Some(e.line),
                        "a replacement cannot contain a NUL character.",
                    );
                    ok = false;
                }
                Some(to) => rules.push((e.key.clone(), to)),
                None => ok = false,
            }
        }
        ok.then(|| Substitutions::new(rules))
    }

    /// The guide: replacing a whole value with the empty string makes the import fail.
    fn whole_value_emptied(
        &mut self,
        top: &Fields,
        subs: &Substitutions,
        field: &str,
        value: &str,
    ) {
        if !value.is_empty() && subs.apply(value).is_empty() {
            let line = top
                .entries
                .iter()
                .find(|e| e.key == "substitutions")
                .map(|e| e.line);
            self.error(
                Code::InvalidManifestField,
                "substitutions",
                line,
                format!(
                    "the substitutions replace the whole {field} `{value}` with an empty string. Change the substitution or the {field}."
                ),
            );
        }
    }

    // ---- EBS and Glacier import ---------------------------------------------------------

    fn image_operations<'e>(
        &mut self,
        top: &mut Fields<'e>,
        allowed: &[&str],
    ) -> Option<(Fields<'e>, Region)> {
        let items = self.operations(top, "one entry with destination, source and region")?;
        let mut regions = Vec::new();
        for (i, (item_line, op)) in items.iter().enumerate() {
            if let Some(e) = op.iter().find(|e| e.key == "region") {
                if let Value::Scalar(s) = &e.value {
                    regions.push((i, *item_line, s.text.clone()));
                }
            }
        }
        if let Some((_, _, first)) = regions.first() {
            if let Some((i, line, other)) = regions.iter().find(|(_, _, r)| r != first) {
                self.error(
                    Code::MultipleRegions,
                    &format!("operations[{i}].region"),
                    Some(*line),
                    format!(
                        "the operations name regions {first} and {other}; a job loads into one region. Create one job per region."
                    ),
                );
                return None;
            }
        }
        if items.len() > 1 {
            self.error(
                Code::InvalidManifestField,
                "operations",
                Some(items[1].0),
                "a device is imported as one image: give exactly one operation.",
            );
            return None;
        }
        let (line, op) = items[0];
        let mut f = Fields::new(op, "operations[0]", Some(line));
        let missing = Code::MissingManifestField;
        let source = self.required_scalar(&mut f, "source", missing);
        if let Some((s, l)) = &source {
            if !s.eq_ignore_ascii_case("device") {
                self.error(
                    Code::InvalidManifestField,
                    "operations[0].source",
                    Some(*l),
                    format!("source is `{s}`; for an import it must be `device`."),
                );
            }
        }
        self.required_scalar(&mut f, "destination", missing);
        let region = self.required_scalar(&mut f, "region", missing);
        let region = region.and_then(|(t, l)| self.region(&t, l, allowed_regions(allowed)))?;
        Some((f, region))
    }

    fn ebs_import(&mut self, top: &mut Fields) -> Option<EbsImport> {
        let erase = self.erase_device(top);
        let pin_code = self.pin_code(top);
        let (mut f, region) = self.image_operations(top, EBS_OPERATION_FIELDS)?;
        let big = self.required_bool(
            &mut f,
            "deviceCapacityGreaterThan1TB",
            Code::MissingManifestField,
            Code::InvalidManifestField,
        );
        self.unknown_subfields(&f, EBS_OPERATION_FIELDS, Code::InvalidManifestField);
        erase?;
        Some(EbsImport {
            operation: EbsOperation {
                region,
                device_capacity_greater_than_1tb: big?,
            },
            pin_code: pin_code?,
        })
    }

    fn glacier_import(&mut self, top: &mut Fields) -> Option<GlacierImport> {
        let erase = self.erase_device(top);
        let pin_code = self.pin_code(top);
        let (mut f, region) = self.image_operations(top, GLACIER_OPERATION_FIELDS)?;
        let vault_name = self
            .required_scalar(&mut f, "vaultName", Code::MissingManifestField)
            .and_then(|(t, l)| {
                let ok = (1..=255).contains(&t.len())
                    && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
                if ok {
                    Some(t)
                } else {
                    self.error(
                        Code::InvalidManifestField,
                        "operations[0].vaultName",
                        Some(l),
                        format!("`{t}` is not a Glacier vault name: 1 to 255 letters, digits, `_`, `-` and `.`."),
                    );
                    None
                }
            });
        let archive_comment = self
            .required_scalar(&mut f, "archiveComment", Code::MissingManifestField)
            .and_then(|(t, l)| {
                let count = t.chars().count();
                if count > MAX_ARCHIVE_COMMENT_CHARS {
                    self.error(
                        Code::InvalidManifestField,
                        "operations[0].archiveComment",
                        Some(l),
                        format!("archiveComment is {count} characters; the limit is {MAX_ARCHIVE_COMMENT_CHARS}. Shorten it."),
                    );
                    None
                } else if !t.chars().all(|c| (' '..='~').contains(&c)) {
                    self.error(
                        Code::InvalidManifestField,
                        "operations[0].archiveComment",
                        Some(l),
                        "Glacier archive descriptions are printable ASCII only. Remove the other characters.",
                    );
                    None
                } else {
                    Some(t)
                }
            });
        self.unknown_subfields(&f, GLACIER_OPERATION_FIELDS, Code::InvalidManifestField);
        erase?;
        Some(GlacierImport {
            operation: GlacierOperation {
                region,
                vault_name: vault_name?,
                archive_comment: archive_comment?,
            },
            pin_code: pin_code?,
        })
    }

    fn region(&mut self, text: &str, line: usize, allowed: &[Region]) -> Option<Region> {
        if let Some(r) = allowed
            .iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(text))
        {
            return Some(*r);
        }
        let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        self.error(
            Code::InvalidManifestField,
            "operations[0].region",
            Some(line),
            format!(
                "`{text}` is not a region for this job. Use one of: {}.",
                names.join(", ")
            ),
        );
        None
    }

    // ---- S3 export ----------------------------------------------------------------------

    fn s3_export(&mut self, top: &mut Fields) -> Option<S3Export> {
        let file_system = match self.required_scalar(top, "fileSystem", Code::MissingManifestField)
        {
            Some((t, l)) => {
                if t.eq_ignore_ascii_case("NTFS") {
                    Some(ExportFileSystem::Ntfs)
                } else if t.eq_ignore_ascii_case("EXT4") {
                    Some(ExportFileSystem::Ext4)
                } else {
                    self.error(
                        Code::InvalidFileSystem,
                        "fileSystem",
                        Some(l),
                        format!("the station writes exports as NTFS or EXT4, not `{t}`. Set `fileSystem: NTFS` or `fileSystem: EXT4`."),
                    );
                    None
                }
            }
            None => None,
        };
        let pin_code = self.pin_code(top);
        let true_crypt_password = self.true_crypt_password(top);
        if matches!(pin_code, Some(None)) && matches!(true_crypt_password, Some(None)) {
            self.error(
                Code::MissingManifestField,
                "pinCode",
                None,
                "an export is always encrypted: give `trueCryptPassword` (we write a TrueCrypt container) or `pinCode` (for a PIN-pad device), or both.",
            );
        }
        let recovery_directory = match self.optional_scalar(top, "recoveryDirectory") {
            Some((t, l)) => self.device_path("recoveryDirectory", &t, l).and_then(|p| {
                if p.is_empty() {
                    self.error(
                        Code::InvalidManifestField,
                        "recoveryDirectory",
                        Some(l),
                        "recoveryDirectory cannot be the root of the device. Name a directory, such as EXPORT-RECOVERY.",
                    );
                    None
                } else {
                    Some(p)
                }
            }),
            None => Some("EXPORT-RECOVERY".to_owned()),
        };
        // The guide's minimal export example gives targetDirectory at the top level; we take
        // it as the default of operations that do not give their own.
        let default_target = match self.optional_scalar(top, "targetDirectory") {
            Some((t, l)) => self.device_path("targetDirectory", &t, l).map(Some),
            None => Some(None),
        };
        let substitutions = self.substitutions(top);
        let operations = self.export_operations(top, default_target.clone().flatten());
        if let (Some(ops), Some(subs)) = (&operations, &substitutions) {
            for op in ops {
                self.whole_value_emptied(top, subs, "targetDirectory", &op.target_directory);
            }
        }
        Some(S3Export {
            file_system: file_system?,
            operations: operations?,
            pin_code: pin_code?,
            true_crypt_password: true_crypt_password?,
            recovery_directory: recovery_directory?,
            substitutions: substitutions?,
        })
    }

    fn export_operations(
        &mut self,
        top: &mut Fields,
        default_target: Option<String>,
    ) -> Option<Vec<ExportOperation>> {
        let items =
            self.operations(top, "one `- exportBucket: NAME` entry per bucket to export")?;
        let mut out = Vec::new();
        let mut ok = true;
        for (i, (line, op)) in items.into_iter().enumerate() {
            let path = format!("operations[{i}]");
            let mut f = Fields::new(op, path.clone(), Some(line));
            let bucket = self
                .required_scalar(&mut f, "exportBucket", Code::MissingManifestField)
                .and_then(|(t, l)| self.bucket_name(&format!("{path}.exportBucket"), &t, l));
            let mut key_field = |v: &mut Self, name: &str| match v.optional_scalar(&mut f, name) {
                Some((t, l)) => v.key_part(&format!("{path}.{name}"), t, l).map(Some),
                None => Some(None),
            };
            let prefix = key_field(self, "prefix");
            let begin_marker = key_field(self, "beginMarker");
            let end_marker = key_field(self, "endMarker");
            let target = match self.optional_scalar(&mut f, "targetDirectory") {
                Some((t, l)) => self
                    .device_path(&format!("{path}.targetDirectory"), &t, l)
                    .map(Some),
                None => Some(None),
            };
            self.unknown_subfields(&f, EXPORT_OPERATION_FIELDS, Code::InvalidManifestField);
            match (bucket, prefix, begin_marker, end_marker, target) {
                (
                    Some(bucket),
                    Some(prefix),
                    Some(begin_marker),
                    Some(end_marker),
                    Some(target),
                ) => {
                    let target_directory = target
                        .or_else(|| default_target.clone())
                        .unwrap_or_else(|| bucket.clone());
                    out.push(ExportOperation {
                        export_bucket: bucket,
                        prefix,
                        begin_marker,
                        end_marker,
                        target_directory,
                    });
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// The `operations` list: present, a list of maps, not empty. `wanted` says what an entry
    /// holds, for the messages.
    fn operations<'e>(
        &mut self,
        top: &mut Fields<'e>,
        wanted: &str,
    ) -> Option<Vec<(usize, &'e [Entry])>> {
        let Some(entry) = top.take("operations") else {
            self.error(
                Code::MissingManifestField,
                "operations",
                None,
                format!("operations is required: {wanted}."),
            );
            return None;
        };
        let items = self.list_of_maps(entry, "operations")?;
        if items.is_empty() {
            self.error(
                Code::MissingManifestField,
                "operations",
                Some(entry.line),
                format!("operations has no entry; give {wanted}."),
            );
            return None;
        }
        Some(items)
    }

    /// A directory on the export device: `/`-separated, relative to the root.
    fn device_path(&mut self, field: &str, text: &str, line: usize) -> Option<String> {
        let bad = if text.contains('\\') {
            Some("uses `\\`; separate directories with `/`")
        } else if text.contains('\0') {
            Some("contains a NUL character")
        } else if text.split('/').any(|c| c == "." || c == "..") {
            Some("contains `.` or `..`; give the directory from the device's root")
        } else if text.split('/').any(|c| c.len() > 255) {
            Some("has a directory name longer than 255 bytes")
        } else {
            None
        };
        if let Some(why) = bad {
            self.error(
                Code::InvalidManifestField,
                field,
                Some(line),
                format!("`{text}` {why}."),
            );
            return None;
        }
        Some(
            text.split('/')
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
                .join("/"),
        )
    }

    // ---- secrets ------------------------------------------------------------------------

    fn secret_scalar(&mut self, top: &mut Fields, key: &str) -> Option<Option<(String, usize)>> {
        let Some(entry) = top.take(key) else {
            return Some(None);
        };
        match &entry.value {
            Value::Scalar(s) if s.had_comment && !s.quoted => {
                self.error(
                    Code::InvalidManifestField,
                    key,
                    Some(entry.line),
                    format!("the value of {key} contains ` #`, which YAML reads as the start of a comment. Put the value in double quotes."),
                );
                None
            }
            Value::Scalar(s) if s.text.is_empty() => {
                self.error(
                    Code::InvalidManifestField,
                    key,
                    Some(entry.line),
                    format!("{key} is empty. Give its value, or remove the line."),
                );
                None
            }
            Value::Scalar(s) => Some(Some((s.text.clone(), entry.line))),
            Value::Empty => {
                self.error(
                    Code::InvalidManifestField,
                    key,
                    Some(entry.line),
                    format!("{key} has no value. Give its value, or remove the line."),
                );
                None
            }
            other => {
                self.error(
                    Code::InvalidManifestField,
                    key,
                    Some(entry.line),
                    format!("{key} must be a single value, not {}.", other.shape()),
                );
                None
            }
        }
    }

    fn pin_code(&mut self, top: &mut Fields) -> Option<Option<Secret>> {
        let Some((text, line)) = self.secret_scalar(top, "pinCode")? else {
            return Some(None);
        };
        if !(4..=16).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
            self.error(
                Code::InvalidManifestField,
                "pinCode",
                Some(line),
                "pinCode must be the device's PIN: 4 to 16 digits.",
            );
            return None;
        }
        Some(Some(Secret::new(text)))
    }

    fn true_crypt_password(&mut self, top: &mut Fields) -> Option<Option<Secret>> {
        let Some((text, line)) = self.secret_scalar(top, "trueCryptPassword")? else {
            return Some(None);
        };
        let why = if text.contains('*') || text.contains('\'') {
            Some("must not contain `*` or `'`")
        } else if !text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            Some("must be printable ASCII (TrueCrypt's portable passwords)")
        } else if text.len() > MAX_TRUECRYPT_PASSWORD_BYTES {
            Some("is longer than TrueCrypt's 64 characters")
        } else {
            None
        };
        if let Some(why) = why {
            self.error(
                Code::InvalidManifestField,
                "trueCryptPassword",
                Some(line),
                format!("the password {why}. Choose another password (enclose special characters in double quotes)."),
            );
            return None;
        }
        Some(Some(Secret::new(text)))
    }

    // ---- generic readers ----------------------------------------------------------------

    fn sub_map<'e>(&mut self, entry: &'e Entry, path: &str, code: Code) -> Option<Fields<'e>> {
        match &entry.value {
            Value::Map(entries) => Some(Fields::new(entries, path, Some(entry.line))),
            other => {
                self.error(
                    code,
                    path,
                    Some(entry.line),
                    format!(
                        "{path} must be a block of `name: value` lines indented under `{path}:`, not {}.",
                        other.shape()
                    ),
                );
                None
            }
        }
    }

    fn list_of_maps<'e>(
        &mut self,
        entry: &'e Entry,
        path: &str,
    ) -> Option<Vec<(usize, &'e [Entry])>> {
        let Value::List(items) = &entry.value else {
            self.error(
                Code::InvalidManifestField,
                path,
                Some(entry.line),
                format!(
                    "{path} must be a list of entries, each starting with `- `, not {}.",
                    entry.value.shape()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match &item.value {
                Value::Map(entries) => out.push((item.line, entries.as_slice())),
                other => {
                    self.error(
                        Code::InvalidManifestField,
                        &format!("{path}[{i}]"),
                        Some(item.line),
                        format!(
                            "each entry of {path} must be `name: value` lines, not {}.",
                            other.shape()
                        ),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    fn unknown_subfields(&mut self, f: &Fields, allowed: &[&str], code: Code) {
        for entry in f.unused().collect::<Vec<_>>() {
            let field = f.path_of(&entry.key);
            let hint = match allowed.iter().find(|k| k.eq_ignore_ascii_case(&entry.key)) {
                Some(k) => format!(" Names are case-sensitive: did you mean `{k}`?"),
                None => format!(" The subfields of {} are: {}.", f.path, allowed.join(", ")),
            };
            self.error(
                code,
                &field,
                Some(entry.line),
                format!("`{}` is not a subfield of {}.{hint}", entry.key, f.path),
            );
        }
    }

    fn scalar_value(&mut self, entry: &Entry, field: &str, code: Code) -> Option<String> {
        match &entry.value {
            Value::Scalar(s) => Some(s.text.clone()),
            other => {
                self.error(
                    code,
                    field,
                    Some(entry.line),
                    format!("{field} must be a single value, not {}.", other.shape()),
                );
                None
            }
        }
    }

    fn optional_scalar(&mut self, f: &mut Fields, key: &str) -> Option<(String, usize)> {
        let entry = f.take(key)?;
        let field = f.path_of(key);
        match &entry.value {
            Value::Scalar(s) => Some((s.text.clone(), entry.line)),
            Value::Empty => None,
            other => {
                self.error(
                    Code::InvalidManifestField,
                    &field,
                    Some(entry.line),
                    format!("{field} must be a single value, not {}.", other.shape()),
                );
                None
            }
        }
    }

    fn required_scalar(
        &mut self,
        f: &mut Fields,
        key: &str,
        missing: Code,
    ) -> Option<(String, usize)> {
        let field = f.path_of(key);
        let line = f.entries.iter().find(|e| e.key == key).map(|e| e.line);
        match self.optional_scalar(f, key) {
            Some((t, l)) if !t.trim().is_empty() => Some((t.trim().to_owned(), l)),
            Some(_) | None => {
                // A wrong shape was already reported by optional_scalar.
                let shape_error = self.errors.last().is_some_and(|e| e.field == field);
                if !shape_error {
                    let where_ = if f.path.is_empty() {
                        String::new()
                    } else {
                        format!(" under {}", f.path)
                    };
                    let what = if line.is_some() {
                        "has no value"
                    } else {
                        "is required"
                    };
                    self.error(
                        missing,
                        &field,
                        line.or(f.line),
                        format!("{key} {what}{where_}. Add `{key}: VALUE`."),
                    );
                }
                None
            }
        }
    }

    fn required_text(&mut self, f: &mut Fields, key: &str, missing: Code) -> Option<String> {
        self.required_scalar(f, key, missing).map(|(t, _)| t)
    }

    fn optional_text(&mut self, f: &mut Fields, key: &str) -> Option<String> {
        self.optional_scalar(f, key)
            .map(|(t, _)| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    }

    fn required_bool(
        &mut self,
        f: &mut Fields,
        key: &str,
        missing: Code,
        invalid: Code,
    ) -> Option<bool> {
        let field = f.path_of(key);
        let (t, l) = self.required_scalar(f, key, missing)?;
        self.boolean(&field, &t, l, invalid)
    }

    fn boolean(&mut self, field: &str, text: &str, line: usize, code: Code) -> Option<bool> {
        if text.eq_ignore_ascii_case("yes") || text.eq_ignore_ascii_case("true") {
            Some(true)
        } else if text.eq_ignore_ascii_case("no") || text.eq_ignore_ascii_case("false") {
            Some(false)
        } else {
            self.error(
                code,
                field,
                Some(line),
                format!("`{text}` is not yes or no. Write yes, no, true or false."),
            );
            None
        }
    }

    fn one_of<T: Copy>(
        &mut self,
        field: &str,
        text: &str,
        line: usize,
        values: &[(&str, T)],
        code: Code,
    ) -> Option<T> {
        if let Some((_, v)) = values
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
        {
            return Some(*v);
        }
        let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
        self.error(
            code,
            field,
            Some(line),
            format!(
                "`{text}` is not a valid value. Use one of: {}.",
                names.join(", ")
            ),
        );
        None
    }

    fn bucket_name(&mut self, field: &str, text: &str, line: usize) -> Option<String> {
        let ok = (3..=255).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && text.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Some(text.to_owned())
        } else {
            self.error(
                Code::InvalidManifestField,
                field,
                Some(line),
                format!("`{text}` is not a bucket name: 3 to 255 letters, digits, `.`, `-` and `_`, starting with a letter or digit."),
            );
            None
        }
    }

    fn key_part(&mut self, field: &str, text: String, line: usize) -> Option<String> {
        if text.len() > MAX_KEY_BYTES {
            self.error(
                Code::InvalidManifestField,
                field,
                Some(line),
                format!("{field} is {} bytes; an S3 key is at most {MAX_KEY_BYTES} bytes of UTF-8. Shorten it.", text.len()),
            );
            return None;
        }
        Some(text)
    }

    fn header_value(&mut self, top: &mut Fields, key: &str) -> Option<Option<String>> {
        let Some((text, line)) = self.optional_scalar(top, key) else {
            return Some(None);
        };
        if text.chars().all(|c| c == '\t' || (' '..='~').contains(&c)) {
            Some(Some(text))
        } else {
            self.error(
                Code::InvalidManifestField,
                key,
                Some(line),
                format!("{key} becomes an HTTP header and must be printable ASCII. Remove the other characters."),
            );
            None
        }
    }

    fn media_type(&mut self, field: &str, text: &str, line: usize) -> Option<String> {
        let essence = text.split(';').next().unwrap_or("").trim();
        let ok = match essence.split_once('/') {
            Some((t, s)) => is_token(t) && is_token(s),
            None => false,
        } && text.chars().all(|c| (' '..='~').contains(&c));
        if ok {
            Some(text.to_owned())
        } else {
            self.error(
                Code::InvalidManifestField,
                field,
                Some(line),
                format!("`{text}` is not a media type. Write it as type/subtype, like image/jpeg."),
            );
            None
        }
    }

    fn metadata_key(&mut self, field: &str, text: &str, line: usize) -> Option<String> {
        if is_token(text) {
            Some(text.to_owned())
        } else {
            self.error(
                Code::InvalidManifestField,
                field,
                Some(line),
                format!("`{text}` cannot be an HTTP header name (x-amz-meta-{text}): use ASCII letters, digits and `-`, with no spaces or colons."),
            );
            None
        }
    }
}

fn allowed_regions(fields: &[&str]) -> &'static [Region] {
    if fields.contains(&"vaultName") {
        GLACIER_REGIONS
    } else {
        EBS_REGIONS
    }
}

/// An HTTP token (RFC 9110 `tchar`s).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_email_address(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[]\\,;:\"@".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    local_ok && domain_ok
}

fn is_po_box(street: &str) -> bool {
    let normalized: String = street
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect();
    let words: Vec<&str> = normalized.split_whitespace().collect();
    let joined = words.join(" ");
    words.windows(2).any(|w| {
        (w[0] == "po" || w[0] == "pob")
            && (w[1] == "box" || w[1].bytes().all(|b| b.is_ascii_digit()))
    }) || words.windows(3).any(|w| w == ["p", "o", "box"])
        || joined.contains("post office box")
        || joined.contains("postfach")
        || joined.contains("apartado postal")
        || joined.contains("caixa postal")
        || joined.contains("boîte postale")
        || joined.contains("boite postale")
        || words.contains(&"pobox")
}

/// A dollar amount (`250`, `250.5`, `250.00`) in cents.
fn parse_money_cents(text: &str) -> Option<u64> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 2
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || whole.len() > 12
    {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let frac: u64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    whole.checked_mul(100)?.checked_add(frac)
}

/// Compiles an `ignore` pattern with Java's syntax: fancy-regex covers lookaround,
/// backreferences, atomic groups and possessive quantifiers; Java's `\Q...\E` quoting is
/// translated first.
pub(crate) fn compile_java_regex(pattern: &str) -> Result<fancy_regex::Regex, String> {
    let translated = translate_java_quotes(pattern);
    fancy_regex::Regex::new(&translated).map_err(|e| e.to_string())
}

fn translate_java_quotes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(start) = rest.find("\\Q") {
        // `\\Q` is an escaped backslash followed by Q, not a quote.
        let backslashes = rest[..start]
            .chars()
            .rev()
            .take_while(|&c| c == '\\')
            .count();
        if backslashes % 2 == 1 {
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let quoted_start = start + 2;
        let (quoted, after) = match rest[quoted_start..].find("\\E") {
            Some(end) => (
                &rest[quoted_start..quoted_start + end],
                &rest[quoted_start + end + 2..],
            ),
            None => (&rest[quoted_start..], ""),
        };
        out.push_str(&fancy_regex::escape(quoted));
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_regex_features() {
        for (pattern, path, expected) in [
            (r"\.psd$", "images/resources/chewie.psd", true),
            (r"\.psd$", "images/chewie.PSD", false),
            (r"^backup/", "backup/a", true),
            (r"^backup/", "x/backup/a", false),
            (r"^\$Recycle\.bin/", "$Recycle.bin/x", true),
            (r"^lost\+found/", "lost+found/#123", true),
            (r".*~$", "notes.txt~", true),
            (r"(?<!keep)\.tmp$", "a.tmp", true),
            (r"(?<!keep)\.tmp$", "keep.tmp", false),
            (r"^(\w+)/\1/", "a/a/b", true),
            (r"\Q$Recycle.Bin\E/", "$Recycle.Bin/x", true),
            (r"\Qa.b\E", "axb", false),
            (r"a*+b", "aab", true),
            (r"(?>a+)b", "aab", true),
            (r"(?i)\.psd$", "chewie.PSD", true),
        ] {
            let re = compile_java_regex(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(
                re.is_match(path).ok(),
                Some(expected),
                "{pattern} on {path}"
            );
        }
        assert!(compile_java_regex("(unclosed").is_err());
        assert!(compile_java_regex("*.txt").is_err());
    }

    #[test]
    fn po_boxes() {
        for s in [
            "PO Box 123",
            "P.O. Box 5",
            "p o box 7",
            "Post Office Box 9",
            "POBox 12",
            "Postfach 1234",
        ] {
            assert!(is_po_box(s), "{s}");
        }
        for s in [
            "123 Any Street",
            "UG 8 Golf Course Road",
            "1 Boxwood Lane",
            "Pobrook Road 5",
        ] {
            assert!(!is_po_box(s), "{s}");
        }
    }

    #[test]
    fn email_addresses() {
        assert!(is_email_address("john.doe@example.com"));
        assert!(is_email_address("a+tag@sub.example.co.uk"));
        for bad in [
            "john.doe",
            "a@b",
            "a b@example.com",
            "@example.com",
            "a@-x.com",
            "a@example..com",
        ] {
            assert!(!is_email_address(bad), "{bad}");
        }
    }

    #[test]
    fn money() {
        assert_eq!(parse_money_cents("250.00"), Some(25_000));
        assert_eq!(parse_money_cents("250"), Some(25_000));
        assert_eq!(parse_money_cents("2499.9"), Some(249_990));
        for bad in ["$250", "-5", "1,000", "2.505", "", "abc", "1e3"] {
            assert_eq!(parse_money_cents(bad), None, "{bad}");
        }
    }
}
