//! The validated manifest: typed, defaults applied, every rule of the guide checked.

use std::fmt;

use super::date::HttpDate;
use super::secret::Secret;

/// The `JobType` of a CreateJob request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobType {
    /// An import: S3, EBS or Glacier, chosen by the manifest.
    Import,
    /// An export from S3.
    Export,
}

impl JobType {
    /// Parses the API's JobType, case-insensitively as the service does.
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("import") {
            Some(Self::Import)
        } else if text.eq_ignore_ascii_case("export") {
            Some(Self::Export)
        } else {
            None
        }
    }
}

/// The four kinds of job a manifest describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Files on the device to objects in an S3 bucket (manifestVersion 2.0).
    S3Import,
    /// The raw device to an EBS snapshot (manifestVersion 3.0).
    EbsImport,
    /// The raw device to a Glacier archive (manifestVersion 3.0).
    GlacierImport,
    /// Objects in S3 buckets to files on the device (manifestVersion 2.0).
    S3Export,
}

impl JobKind {
    /// The kind's name as `stationctl` prints it: `s3-import`, `ebs-import`, `glacier-import`,
    /// `s3-export`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S3Import => "s3-import",
            Self::EbsImport => "ebs-import",
            Self::GlacierImport => "glacier-import",
            Self::S3Export => "s3-export",
        }
    }

    /// Whether the job loads a device into AWS (and so erases it afterwards).
    pub fn is_import(self) -> bool {
        !matches!(self, Self::S3Export)
    }

    /// The manifestVersion the guide requires for this kind.
    pub fn manifest_version(self) -> ManifestVersion {
        match self {
            Self::S3Import | Self::S3Export => ManifestVersion::V2_0,
            Self::EbsImport | Self::GlacierImport => ManifestVersion::V3_0,
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The manifest specification version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManifestVersion {
    /// S3 import and export.
    V2_0,
    /// EBS and Glacier import.
    V3_0,
}

impl ManifestVersion {
    /// The version as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2_0 => "2.0",
            Self::V3_0 => "3.0",
        }
    }
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Options every job has.
    pub common: Common,
    /// The options of the job's kind.
    pub job: JobManifest,
}

impl Manifest {
    /// The job's kind.
    pub fn kind(&self) -> JobKind {
        match &self.job {
            JobManifest::S3Import(_) => JobKind::S3Import,
            JobManifest::EbsImport(_) => JobKind::EbsImport,
            JobManifest::GlacierImport(_) => JobKind::GlacierImport,
            JobManifest::S3Export(_) => JobKind::S3Export,
        }
    }

    /// The bucket the job's log goes to: `logBucket`, or for S3 imports the import bucket.
    pub fn log_bucket(&self) -> &str {
        match (&self.common.log_bucket, &self.job) {
            (Some(bucket), _) => bucket,
            (None, JobManifest::S3Import(s3)) => &s3.bucket,
            // Validation requires logBucket for every other kind.
            (None, _) => "",
        }
    }

    /// The log's key: logPrefix + `import-log-` or `export-log-` + job ID.
    pub fn log_key(&self, job_id: &str) -> String {
        let word = if self.kind().is_import() {
            "import"
        } else {
            "export"
        };
        format!("{}{word}-log-{job_id}", self.common.log_prefix)
    }

    /// The device's PIN, for PIN-pad devices.
    pub fn pin_code(&self) -> Option<&Secret> {
        match &self.job {
            JobManifest::S3Import(j) => j.pin_code.as_ref(),
            JobManifest::EbsImport(j) => j.pin_code.as_ref(),
            JobManifest::GlacierImport(j) => j.pin_code.as_ref(),
            JobManifest::S3Export(j) => j.pin_code.as_ref(),
        }
    }

    /// The TrueCrypt password (S3 import and export only).
    pub fn true_crypt_password(&self) -> Option<&Secret> {
        match &self.job {
            JobManifest::S3Import(j) => j.true_crypt_password.as_ref(),
            JobManifest::S3Export(j) => j.true_crypt_password.as_ref(),
            JobManifest::EbsImport(_) | JobManifest::GlacierImport(_) => None,
        }
    }
}

/// The options of one kind of job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobManifest {
    /// Import to S3.
    S3Import(Box<S3Import>),
    /// Import to an EBS snapshot.
    EbsImport(EbsImport),
    /// Import to a Glacier archive.
    GlacierImport(GlacierImport),
    /// Export from S3.
    S3Export(S3Export),
}

/// The guide's common options.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    /// manifestVersion.
    pub manifest_version: ManifestVersion,
    /// deviceId: the customer's identifier of the device.
    pub device_id: String,
    /// generator.
    pub generator: Option<String>,
    /// accessKeyId: deprecated, kept for old manifests; never used.
    pub access_key_id: Option<String>,
    /// logBucket; `None` only for S3 imports, whose log goes to the import bucket.
    pub log_bucket: Option<String>,
    /// logPrefix, inserted as written (no `/` is added).
    pub log_prefix: String,
    /// notificationEmail, split at `;`.
    pub notification_email: Vec<String>,
    /// returnAddress.
    pub return_address: ReturnAddress,
    /// serviceLevel.
    pub service_level: ServiceLevel,
    /// customs, when given.
    pub customs: Option<Customs>,
}

/// Where the device goes back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnAddress {
    /// name.
    pub name: String,
    /// company.
    pub company: Option<String>,
    /// street1.
    pub street1: String,
    /// street2.
    pub street2: Option<String>,
    /// street3.
    pub street3: Option<String>,
    /// city.
    pub city: String,
    /// stateOrProvince (required for the USA and Canada).
    pub state_or_province: Option<String>,
    /// postalCode.
    pub postal_code: String,
    /// phoneNumber.
    pub phone_number: String,
    /// country, as written.
    pub country: String,
    /// The country's ISO 3166-1 alpha-2 code.
    pub country_code: &'static str,
}

/// serviceLevel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceLevel {
    /// Ground shipping.
    Standard,
    /// Two-day shipping (US facility to US address only).
    ExpeditedShipping,
}

/// The customs subfields.
#[derive(Debug, Clone, PartialEq)]
pub struct Customs {
    /// dataDescription.
    pub data_description: String,
    /// encryptedData.
    pub encrypted_data: bool,
    /// encryptionClassification (required when encryptedData is yes).
    pub encryption_classification: Option<String>,
    /// exportCertifierName.
    pub export_certifier_name: String,
    /// requiresExportLicense.
    pub requires_export_license: bool,
    /// deviceValue in US cents (below 2,500.00 dollars).
    pub device_value_cents: u64,
    /// deviceCountryOfOrigin, as written.
    pub device_country_of_origin: String,
    /// deviceType.
    pub device_type: DeviceType,
    /// deviceHTS: the given code, or the device type's default.
    pub device_hts: String,
    /// typeOfExport.
    pub type_of_export: TypeOfExport,
}

/// customs.deviceType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    /// externalStorageDevice (HTS 8471.70.4065).
    ExternalStorageDevice,
    /// usbFlashDrive (HTS 8471.70.9000).
    UsbFlashDrive,
    /// sataDrive (HTS 8471.70.2000).
    SataDrive,
}

impl DeviceType {
    /// The guide's default Harmonized Tariff Schedule code for the type.
    pub fn default_hts(self) -> &'static str {
        match self {
            Self::ExternalStorageDevice => "8471.70.4065",
            Self::UsbFlashDrive => "8471.70.9000",
            Self::SataDrive => "8471.70.2000",
        }
    }
}

/// customs.typeOfExport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeOfExport {
    /// Back to the country it came from (the default).
    Return,
    /// Stays in the destination country.
    Permanent,
    /// Comes back to the facility's country later.
    Temporary,
}

/// The options of an S3 import.
#[derive(Debug, Clone)]
pub struct S3Import {
    /// bucket.
    pub bucket: String,
    /// acl.
    pub acl: CannedAcl,
    /// cacheControl.
    pub cache_control: Option<String>,
    /// contentDisposition.
    pub content_disposition: Option<String>,
    /// contentLanguage.
    pub content_language: Option<String>,
    /// contentTypes: extension (lowercase, no dot) to Content-Type. Lookups are
    /// case-insensitive, as the option reference says.
    pub content_types: Vec<(String, String)>,
    /// defaultContentType: the type of files no table names.
    pub default_content_type: Option<String>,
    /// diskTimestampMetadataKey (without `x-amz-meta-`).
    pub disk_timestamp_metadata_key: Option<String>,
    /// expires.
    pub expires: Option<HttpDate>,
    /// ignore, compiled.
    pub ignore: Vec<IgnorePattern>,
    /// pinCode.
    pub pin_code: Option<Secret>,
    /// prefix, inserted as written (no `/` is added).
    pub prefix: String,
    /// setContentEncodingForGzFiles.
    pub set_content_encoding_for_gz_files: bool,
    /// staticMetadata (keys without `x-amz-meta-`), in manifest order.
    pub static_metadata: Vec<(String, String)>,
    /// storageClass.
    pub storage_class: StorageClass,
    /// substitutions.
    pub substitutions: Substitutions,
    /// trueCryptPassword.
    pub true_crypt_password: Option<Secret>,
}

impl PartialEq for S3Import {
    fn eq(&self, other: &Self) -> bool {
        // Compiled patterns compare by their source.
        self.bucket == other.bucket
            && self.acl == other.acl
            && self.cache_control == other.cache_control
            && self.content_disposition == other.content_disposition
            && self.content_language == other.content_language
            && self.content_types == other.content_types
            && self.default_content_type == other.default_content_type
            && self.disk_timestamp_metadata_key == other.disk_timestamp_metadata_key
            && self.expires == other.expires
            && self.ignore == other.ignore
            && self.pin_code == other.pin_code
            && self.prefix == other.prefix
            && self.set_content_encoding_for_gz_files == other.set_content_encoding_for_gz_files
            && self.static_metadata == other.static_metadata
            && self.storage_class == other.storage_class
            && self.substitutions == other.substitutions
            && self.true_crypt_password == other.true_crypt_password
    }
}

impl S3Import {
    /// The manifest's Content-Type for a file extension, case-insensitively.
    pub fn content_type_for(&self, extension: &str) -> Option<&str> {
        self.content_types
            .iter()
            .find(|(ext, _)| ext.eq_ignore_ascii_case(extension))
            .map(|(_, t)| t.as_str())
    }

    /// Whether an `ignore` pattern matches a path relative to the device's root (`/`
    /// separators). A pattern matches anywhere in the path, as Java's `Matcher.find` does.
    pub fn is_ignored(&self, path: &str) -> bool {
        self.ignore.iter().any(|p| p.matches(path))
    }
}

/// One compiled `ignore` entry.
#[derive(Debug, Clone)]
pub struct IgnorePattern {
    /// The pattern as written.
    pub source: String,
    regex: fancy_regex::Regex,
}

impl IgnorePattern {
    /// Wraps a compiled pattern.
    pub(crate) fn new(source: String, regex: fancy_regex::Regex) -> Self {
        Self { source, regex }
    }

    /// Whether the pattern is found in `path`. A pattern whose backtracking exceeds the regex
    /// engine's limit counts as not matching; the file is then imported, never lost.
    pub fn matches(&self, path: &str) -> bool {
        self.regex.is_match(path).unwrap_or(false)
    }
}

impl PartialEq for IgnorePattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// The manifest's substitutions: applied in one left-to-right pass, longest match first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Substitutions {
    /// (from, to), longest `from` first.
    rules: Vec<(String, String)>,
}

impl Substitutions {
    /// Rules as written; sorted here so the longest match is tried first.
    pub fn new(mut rules: Vec<(String, String)>) -> Self {
        // Stable sort keeps manifest order among rules of equal length.
        rules.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        Self { rules }
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, longest `from` first.
    pub fn rules(&self) -> &[(String, String)] {
        &self.rules
    }

    /// Applies the rules to `value`: at each position the longest matching `from` is replaced
    /// and scanning continues after it, so a replacement is never substituted again.
    pub fn apply(&self, value: &str) -> String {
        if self.rules.is_empty() {
            return value.to_owned();
        }
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        'scan: while !rest.is_empty() {
            for (from, to) in &self.rules {
                if let Some(after) = rest.strip_prefix(from.as_str()) {
                    out.push_str(to);
                    rest = after;
                    continue 'scan;
                }
            }
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
        }
        out
    }
}

/// acl: the canned ACLs the guide allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CannedAcl {
    /// private (the default).
    Private,
    /// public-read.
    PublicRead,
    /// public-read-write.
    PublicReadWrite,
    /// authenticated-read.
    AuthenticatedRead,
}

impl CannedAcl {
    /// The value S3 takes in `x-amz-acl`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::PublicRead => "public-read",
            Self::PublicReadWrite => "public-read-write",
            Self::AuthenticatedRead => "authenticated-read",
        }
    }
}

/// storageClass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageClass {
    /// STANDARD (the default).
    Standard,
    /// REDUCED_REDUNDANCY.
    ReducedRedundancy,
}

impl StorageClass {
    /// The value S3 takes in `x-amz-storage-class`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "STANDARD",
            Self::ReducedRedundancy => "REDUCED_REDUNDANCY",
        }
    }
}

/// The regions the guide names for EBS and Glacier operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Region {
    /// us-east-1.
    UsEast1,
    /// us-west-1.
    UsWest1,
    /// us-west-2.
    UsWest2,
    /// eu-west-1.
    EuWest1,
    /// ap-southeast-1 (EBS only).
    ApSoutheast1,
}

impl Region {
    /// The region's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsEast1 => "us-east-1",
            Self::UsWest1 => "us-west-1",
            Self::UsWest2 => "us-west-2",
            Self::EuWest1 => "eu-west-1",
            Self::ApSoutheast1 => "ap-southeast-1",
        }
    }

    /// Every region, in the guide's order.
    pub const ALL: [Region; 5] = [
        Self::UsEast1,
        Self::UsWest1,
        Self::UsWest2,
        Self::EuWest1,
        Self::ApSoutheast1,
    ];
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The options of an EBS import.
#[derive(Debug, Clone, PartialEq)]
pub struct EbsImport {
    /// The one operation.
    pub operation: EbsOperation,
    /// pinCode.
    pub pin_code: Option<Secret>,
}

/// An EBS `operations` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbsOperation {
    /// region.
    pub region: Region,
    /// deviceCapacityGreaterThan1TB.
    pub device_capacity_greater_than_1tb: bool,
}

/// The options of a Glacier import.
#[derive(Debug, Clone, PartialEq)]
pub struct GlacierImport {
    /// The one operation.
    pub operation: GlacierOperation,
    /// pinCode.
    pub pin_code: Option<Secret>,
}

/// A Glacier `operations` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlacierOperation {
    /// region.
    pub region: Region,
    /// vaultName.
    pub vault_name: String,
    /// archiveComment: the archive description (printable ASCII, at most 997 characters).
    pub archive_comment: String,
}

/// The options of an S3 export.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Export {
    /// fileSystem.
    pub file_system: ExportFileSystem,
    /// operations, in manifest order.
    pub operations: Vec<ExportOperation>,
    /// pinCode.
    pub pin_code: Option<Secret>,
    /// trueCryptPassword.
    pub true_crypt_password: Option<Secret>,
    /// recoveryDirectory (default `EXPORT-RECOVERY`).
    pub recovery_directory: String,
    /// substitutions, applied to the target path.
    pub substitutions: Substitutions,
}

/// fileSystem of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFileSystem {
    /// NTFS.
    Ntfs,
    /// EXT4.
    Ext4,
}

/// An export `operations` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOperation {
    /// exportBucket.
    pub export_bucket: String,
    /// prefix: only keys starting with it.
    pub prefix: Option<String>,
    /// beginMarker: only keys after it (excluded).
    pub begin_marker: Option<String>,
    /// endMarker: only keys up to and including it.
    pub end_marker: Option<String>,
    /// targetDirectory, relative to the device's root, without leading or trailing `/`;
    /// empty means the root. Default: the bucket name.
    pub target_directory: String,
}
