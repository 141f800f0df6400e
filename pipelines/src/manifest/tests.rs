//! Manifest tests: every example manifest of the guide, and one bad manifest per rule.

use super::*;
use ManifestErrorCode as C;

/// The guide's example manifests, copied verbatim from the guide (two reassembled where a page
/// break split them; see testdata/manifests/guide/README.md).
fn guide(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/testdata/manifests/guide/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn check(text: &[u8], job_type: JobType) -> Result<Manifest, ManifestErrors> {
    parse(text, job_type, &Rules::default())
}

fn accepted(text: &[u8], job_type: JobType) -> Manifest {
    match check(text, job_type) {
        Ok(m) => m,
        Err(e) => panic!("refused: {:#?}", e.all()),
    }
}

#[test]
fn guide_examples_are_accepted() {
    for (name, job_type, kind) in [
        ("s3-import-required", JobType::Import, JobKind::S3Import),
        ("ebs-import-required", JobType::Import, JobKind::EbsImport),
        ("s3-export-required", JobType::Export, JobKind::S3Export),
        (
            "s3-import-common-options",
            JobType::Import,
            JobKind::S3Import,
        ),
        ("s3-import-customs", JobType::Import, JobKind::S3Import),
        ("s3-import-reference", JobType::Import, JobKind::S3Import),
        ("ebs-import-reference", JobType::Import, JobKind::EbsImport),
        (
            "glacier-import-reference",
            JobType::Import,
            JobKind::GlacierImport,
        ),
        ("s3-export-reference", JobType::Export, JobKind::S3Export),
        ("tstd1", JobType::Import, JobKind::S3Import),
        ("tstd2", JobType::Import, JobKind::S3Import),
        ("tstd3", JobType::Import, JobKind::S3Import),
    ] {
        let m = match check(&guide(name), job_type) {
            Ok(m) => m,
            Err(e) => panic!("{name}: {:#?}", e.all()),
        };
        assert_eq!(m.kind(), kind, "{name}");
    }
}

/// Three of the guide's examples contradict its own option reference; we keep the reference's
/// rules and refuse them with the error a customer can act on.
#[test]
fn guide_examples_that_contradict_the_reference_are_refused_precisely() {
    for (name, job_type, code, field) in [
        // "You must include eraseDevice: Yes in your import manifest" (and the Glacier
        // reference table marks it required), yet the minimal Glacier example omits it.
        (
            "glacier-import-required",
            JobType::Import,
            C::MissingManifestField,
            "eraseDevice",
        ),
        // TSTDA predates manifest version 2.0 and exports to FAT32.
        (
            "tstda",
            JobType::Export,
            C::InvalidManifestField,
            "manifestVersion",
        ),
        // TSTDB has neither pinCode nor trueCryptPassword, which every export now requires.
        (
            "tstdb",
            JobType::Export,
            C::MissingManifestField,
            "notificationEmail",
        ),
    ] {
        let errors = match check(&guide(name), job_type) {
            Ok(_) => panic!("{name} accepted"),
            Err(e) => e,
        };
        assert_eq!(errors.first().code, code, "{name}: {:#?}", errors.all());
        assert_eq!(errors.first().field, field, "{name}: {:#?}", errors.all());
    }
    // TSTDB's other problem is reported too.
    let errors = check(&guide("tstdb"), JobType::Export)
        .err()
        .map(|e| e.all().to_vec());
    let fields: Vec<String> = errors
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert!(fields.contains(&"pinCode".to_owned()), "{fields:?}");
}

#[test]
fn guide_examples_parse_to_what_they_say() {
    let m = accepted(&guide("s3-import-reference"), JobType::Import);
    let JobManifest::S3Import(s3) = &m.job else {
        panic!("not s3")
    };
    assert_eq!(s3.bucket, "my-amz-bucket");
    assert_eq!(s3.acl, CannedAcl::AuthenticatedRead);
    assert_eq!(s3.prefix, "imported/");
    assert_eq!(m.log_key("53TX4"), "logsimport-log-53TX4");
    assert_eq!(m.log_bucket(), "iemanifest-bucket");
    assert_eq!(s3.content_type_for("CSV"), Some("application/vnd.ms-excel"));
    assert!(s3.is_ignored("images/resources/chewie.psd"));
    assert!(!s3.is_ignored("images/chewie.gif"));
    assert_eq!(
        s3.static_metadata,
        vec![
            (
                "import-timestamp".to_owned(),
                "Wed, 23 Feb 2011 01:55:59 GMT".to_owned()
            ),
            ("application".to_owned(), "AppImportedData".to_owned()),
        ]
    );
    assert_eq!(m.pin_code().map(Secret::expose), Some("4321"));
    assert_eq!(
        m.true_crypt_password().map(Secret::expose),
        Some("SimpleButEasilyCrackedEXAMPLE")
    );
    assert!(s3.set_content_encoding_for_gz_files);
    assert_eq!(m.common.notification_email.len(), 2);
    assert_eq!(m.common.service_level, ServiceLevel::ExpeditedShipping);

    // TSTD1 has no logBucket: the log goes to the import bucket.
    let m = accepted(&guide("tstd1"), JobType::Import);
    assert_eq!(m.log_bucket(), "myawsbucket");
    assert_eq!(m.log_key("TSTD1"), "import-log-TSTD1");

    let m = accepted(&guide("s3-export-required"), JobType::Export);
    let JobManifest::S3Export(export) = &m.job else {
        panic!("not export")
    };
    // Top-level `targetDirectory:/` puts the bucket's keys at the device's root.
    assert_eq!(export.operations[0].target_directory, "");
    assert_eq!(export.recovery_directory, "EXPORT-RECOVERY");
    assert_eq!(export.file_system, ExportFileSystem::Ntfs);

    let m = accepted(&guide("s3-export-reference"), JobType::Export);
    let JobManifest::S3Export(export) = &m.job else {
        panic!("not export")
    };
    let op = &export.operations[0];
    assert_eq!(op.target_directory, "myexport/stuff");
    assert_eq!(op.begin_marker.as_deref(), Some("images/starwars"));
    assert_eq!(op.end_marker.as_deref(), Some("images/xena"));
    assert_eq!(export.recovery_directory, "LostAndFound");
    assert_eq!(m.log_key("ABCDE"), "logsexport-log-ABCDE");

    let m = accepted(&guide("glacier-import-reference"), JobType::Import);
    let JobManifest::GlacierImport(g) = &m.job else {
        panic!("not glacier")
    };
    assert_eq!(g.operation.vault_name, "MyGlacierVault");
    assert_eq!(g.operation.archive_comment, "July 24, 2012 daily archive");
    assert_eq!(g.operation.region, Region::UsEast1);

    let m = accepted(&guide("s3-import-customs"), JobType::Import);
    let customs = m
        .common
        .customs
        .as_ref()
        .map(|c| (c.device_value_cents, c.device_hts.clone()));
    assert_eq!(customs, Some((25_000, "8471.70.4065".to_owned())));
    assert_eq!(m.common.return_address.country_code, "IN");
}

/// The guide's manifest snippets, each placed in a valid manifest of its kind.
#[test]
fn guide_snippets_are_accepted() {
    let s3_snippets = [
        "ignore:\n- .*~$\n- .*\\.swp$\n",
        "ignore:\n- ^backup/\n",
        "ignore:\n- ^images/myImages/\n",
        "ignore:\n- ^\\$Recycle\\.bin/\n- ^RECYCLER/\n- ^RECYCLED/\n",
        "ignore:\n- ^lost\\+found/\n",
        "substitutions:\n  \"A\" : \"a\"\n  \"B\" : \"b\"\n  \"C\" : \"c\"\n",
        "prefix: myprefix$COLON$\nsubstitutions:\n  \"$COLON$\" : \":\"\n  \"$QUOTE$\" : \"\\\"\"\n",
        "substitutions:\n  $COLON$ : \":\"\n",
        "substitutions:\n  \"ZZ1/\" : \"\"\n  \"ZZ2/\" : \"\"\n  \"ZZ3/\" : \"\"\n",
        "setContentEncodingForGzFiles: yes\n",
        "acl: public-read\n",
        "contentTypes :\n  jpg: image/jpeg\n  JPG: image/jpeg\n  gif: image/gif\n  GIF: image/gif\n  mp3: audio/mpeg\n  txt: text/plain\n  zip: application/zip\n",
        "expires: Thu, 07 Jan 2010 16:00:00 GMT\n",
        "expires: Mon , 12 Apr 2010 23:20:00 UT\n",
        "storageClass: REDUCED_REDUNDANCY\n",
        "trueCryptPassword:\n  SimpleButEasilyCrackedEXAMPLE\n",
        "logPrefix: logs/\n",
    ];
    for snippet in s3_snippets {
        let text = format!("{S3_BASE}{snippet}");
        if let Err(e) = check(text.as_bytes(), JobType::Import) {
            panic!("{snippet}: {:#?}", e.all());
        }
    }
    let export_snippets = [
        "operations:\n- exportBucket: mybucket\n  beginMarker: html/index.html\n  endMarker: images/kate.jpg\n",
        "operations:\n  - exportBucket: mybucket\n    prefix: images\n    beginMarker: images/starwars/jedi.jpg\n    endMarker: images/starwars/masterwindoo.jpg\n  - exportBucket: lost\n  - exportBucket: threescompany\n    prefix: images\n    endMarker: images/characters/mrfurley.jpg\n",
        "operations:\n  - exportBucket: bucket-data-comes-from\n    targetDirectory: myexport/stuff\n",
        "substitutions:\n  \":\" : \"$COLON$\"\n  \",\" : \"$COMMA$\"\noperations:\n  - exportBucket: mybucket\n    prefix: myprefix,\n    targetDirectory: data,\n",
    ];
    for snippet in export_snippets {
        let text = format!("{EXPORT_BASE_NO_OPS}{snippet}");
        if let Err(e) = check(text.as_bytes(), JobType::Export) {
            panic!("{snippet}: {:#?}", e.all());
        }
    }
}

#[test]
fn substitutions_follow_the_guide_examples() {
    let text = format!(
        "{S3_BASE}prefix: myprefix$COLON$\nsubstitutions:\n  \"$COLON$\" : \":\"\n  \"$QUOTE$\" : \"\\\"\"\n"
    );
    let m = accepted(text.as_bytes(), JobType::Import);
    let JobManifest::S3Import(s3) = &m.job else {
        panic!()
    };
    let key = format!(
        "{}{}",
        s3.prefix, "backup/$COLON$$QUOTE$computer1$QUOTE$/c$COLON$/image.dat"
    );
    assert_eq!(
        s3.substitutions.apply(&key),
        "myprefix:backup/:\"computer1\"/c:/image.dat"
    );
    // Longest match first, and a replacement is not substituted again.
    let subs = Substitutions::new(vec![
        ("a".into(), "b".into()),
        ("aa".into(), "X".into()),
        ("b".into(), "c".into()),
    ]);
    assert_eq!(subs.apply("aaab"), "Xbc");
}

const ADDRESS: &str = "returnAddress:
  name: Jane Roe
  company: Example Corp.
  street1: 123 Any Street
  city: Anytown
  stateOrProvince: WA
  postalCode: 91011-1111
  phoneNumber: 206-555-1111
  country: USA
";

const S3_BASE: &str = "manifestVersion: 2.0
deviceId: ABCDE
eraseDevice: yes
notificationEmail: john.doe@example.com
bucket: my-bucket
returnAddress:
  name: Jane Roe
  street1: 123 Any Street
  city: Anytown
  stateOrProvince: WA
  postalCode: 91011-1111
  phoneNumber: 206-555-1111
  country: USA
";

const EBS_BASE: &str = "manifestVersion: 3.0
deviceId: ABCDE
eraseDevice: yes
logBucket: log-bucket
notificationEmail: john.doe@example.com
operations:
  - destination: ebs-snapshot
    source: device
    region: us-east-1
    deviceCapacityGreaterThan1TB: no
";

const GLACIER_BASE: &str = "manifestVersion: 3.0
deviceId: ABCDE
eraseDevice: yes
logBucket: log-bucket
notificationEmail: john.doe@example.com
operations:
  - destination: glacier
    source: device
    region: us-west-2
    vaultName: vault
    archiveComment: nightly
";

const EXPORT_BASE_NO_OPS: &str = "manifestVersion: 2.0
deviceId: ABCDE
fileSystem: EXT4
trueCryptPassword: \"correct horse\"
logBucket: log-bucket
notificationEmail: john.doe@example.com
returnAddress:
  name: Jane Roe
  street1: 123 Any Street
  city: Anytown
  stateOrProvince: WA
  postalCode: 91011-1111
  phoneNumber: 206-555-1111
  country: USA
";

const EXPORT_OPS: &str = "operations:
  - exportBucket: my-bucket
";

const CUSTOMS: &str = "customs:
  dataDescription: Medical test results.
  encryptedData: yes
  encryptionClassification: 5D992
  exportCertifierName: John Doe
  requiresExportLicense: no
  deviceValue: 250.00
  deviceCountryOfOrigin: Ghana
  deviceType: externalStorageDevice
";

fn ebs() -> String {
    format!("{EBS_BASE}{ADDRESS}")
}
fn glacier() -> String {
    format!("{GLACIER_BASE}{ADDRESS}")
}
fn export() -> String {
    format!("{EXPORT_BASE_NO_OPS}{EXPORT_OPS}")
}
fn s3() -> String {
    S3_BASE.to_owned()
}
/// An S3 import returning to India, which needs customs.
fn s3_india(customs: &str) -> String {
    s3().replace("stateOrProvince: WA\n", "stateOrProvince: Haryana\n")
        .replace("country: USA", "country: India")
        + customs
}

fn all_bases_are_valid() -> [(String, JobType); 5] {
    [
        (s3(), JobType::Import),
        (ebs(), JobType::Import),
        (glacier(), JobType::Import),
        (export(), JobType::Export),
        (s3_india(CUSTOMS), JobType::Import),
    ]
}

#[test]
fn test_bases_are_valid() {
    for (text, job_type) in all_bases_are_valid() {
        accepted(text.as_bytes(), job_type);
    }
}

/// One bad manifest per rule: the exact code and the field the first error names.
#[test]
fn each_rule_has_its_code_and_names_its_field() {
    use JobType::{Export as E, Import as I};
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, String, JobType, ManifestErrorCode, &str)> = vec![
        // Structure.
        ("tab indent", s3().replace("  name: Jane", "\tname: Jane"), I, C::MalformedManifest, ""),
        ("unclosed quote", s3() + "prefix: \"abc\n", I, C::MalformedManifest, "prefix"),
        ("duplicate field", s3() + "deviceId: B\n", I, C::MalformedManifest, "deviceId"),
        ("template placeholder", s3().replace("bucket: my-bucket", "bucket:[Enter import bucket]"), I, C::MalformedManifest, "bucket"),
        ("unknown top-level field", s3() + "colour: blue\n", I, C::InvalidManifestField, "colour"),
        ("misspelled field", s3() + "ContentTypes:\n  a: b/c\n", I, C::InvalidManifestField, "ContentTypes"),
        ("field of another kind", s3() + "fileSystem: NTFS\n", I, C::InvalidManifestField, "fileSystem"),
        ("truecrypt on ebs", ebs() + "trueCryptPassword: abc\n", I, C::InvalidManifestField, "trueCryptPassword"),
        // Required fields per kind.
        ("no manifestVersion", s3().replace("manifestVersion: 2.0\n", ""), I, C::MissingManifestField, "manifestVersion"),
        ("no deviceId", s3().replace("deviceId: ABCDE\n", ""), I, C::MissingManifestField, "deviceId"),
        ("empty deviceId", s3().replace("deviceId: ABCDE", "deviceId:"), I, C::MissingManifestField, "deviceId"),
        ("no bucket", s3().replace("bucket: my-bucket\n", ""), I, C::MissingManifestField, "bucket"),
        ("no notificationEmail", s3().replace("notificationEmail: john.doe@example.com\n", ""), I, C::MissingManifestField, "notificationEmail"),
        ("no returnAddress", S3_BASE.split("returnAddress").next().unwrap_or("").to_owned(), I, C::MissingManifestField, "returnAddress"),
        ("no city", s3().replace("  city: Anytown\n", ""), I, C::MissingManifestField, "returnAddress.city"),
        ("no logBucket on ebs", ebs().replace("logBucket: log-bucket\n", ""), I, C::MissingManifestField, "logBucket"),
        ("no operations on glacier", glacier().split("operations").next().unwrap_or("").to_owned() + ADDRESS, I, C::MissingManifestField, "operations"),
        ("no vaultName", glacier().replace("    vaultName: vault\n", ""), I, C::MissingManifestField, "operations[0].vaultName"),
        ("no archiveComment", glacier().replace("    archiveComment: nightly\n", ""), I, C::MissingManifestField, "operations[0].archiveComment"),
        ("no deviceCapacityGreaterThan1TB", ebs().replace("    deviceCapacityGreaterThan1TB: no\n", ""), I, C::MissingManifestField, "operations[0].deviceCapacityGreaterThan1TB"),
        ("no exportBucket", export().replace("  - exportBucket: my-bucket\n", "  - prefix: a\n"), E, C::MissingManifestField, "operations[0].exportBucket"),
        ("no fileSystem", export().replace("fileSystem: EXT4\n", ""), E, C::MissingManifestField, "fileSystem"),
        // manifestVersion matches the kind.
        ("s3 import with 3.0", s3().replace("manifestVersion: 2.0", "manifestVersion: 3.0"), I, C::MissingManifestField, "operations"),
        ("glacier with 2.0", glacier().replace("manifestVersion: 3.0", "manifestVersion: 2.0"), I, C::InvalidManifestField, "manifestVersion"),
        ("export with 3.0", export().replace("manifestVersion: 2.0", "manifestVersion: 3.0"), E, C::InvalidManifestField, "manifestVersion"),
        ("unknown version", s3().replace("manifestVersion: 2.0", "manifestVersion: 2"), I, C::InvalidManifestField, "manifestVersion"),
        ("unknown destination", ebs().replace("ebs-snapshot", "s3"), I, C::InvalidManifestField, "operations[0].destination"),
        // eraseDevice.
        ("eraseDevice no", s3().replace("eraseDevice: yes", "eraseDevice: no"), I, C::InvalidManifestField, "eraseDevice"),
        ("eraseDevice missing", s3().replace("eraseDevice: yes\n", ""), I, C::MissingManifestField, "eraseDevice"),
        ("eraseDevice missing on ebs", ebs().replace("eraseDevice: yes\n", ""), I, C::MissingManifestField, "eraseDevice"),
        // Lengths.
        ("logPrefix too long", s3() + &format!("logPrefix: {}\n", long(1024 - 11 - 5 + 1)), I, C::InvalidManifestField, "logPrefix"),
        ("export logPrefix too long", export() + &format!("logPrefix: {}\n", long(1024 - 11 - 5 + 1)), E, C::InvalidManifestField, "logPrefix"),
        ("prefix too long", s3() + &format!("prefix: {}\n", long(1025)), I, C::InvalidManifestField, "prefix"),
        ("export prefix too long", export() + &format!("    prefix: {}\n", long(1025)), E, C::InvalidManifestField, "operations[0].prefix"),
        ("archiveComment too long", glacier().replace("archiveComment: nightly", &format!("archiveComment: {}", long(998))), I, C::InvalidManifestField, "operations[0].archiveComment"),
        ("archiveComment not ascii", glacier().replace("archiveComment: nightly", "archiveComment: nächtlich"), I, C::InvalidManifestField, "operations[0].archiveComment"),
        // Secrets.
        ("password with asterisk", s3() + "trueCryptPassword: abc*def\n", I, C::InvalidManifestField, "trueCryptPassword"),
        ("password with quote", s3() + "trueCryptPassword: \"abc'def\"\n", I, C::InvalidManifestField, "trueCryptPassword"),
        ("password too long", s3() + &format!("trueCryptPassword: {}\n", long(65)), I, C::InvalidManifestField, "trueCryptPassword"),
        ("password with comment", s3() + "trueCryptPassword: abc #def\n", I, C::InvalidManifestField, "trueCryptPassword"),
        ("pin not digits", s3() + "pinCode: 12ab\n", I, C::InvalidManifestField, "pinCode"),
        // Export encryption and file system.
        ("export unencrypted", export().replace("trueCryptPassword: \"correct horse\"\n", ""), E, C::MissingManifestField, "pinCode"),
        ("export FAT32", export().replace("fileSystem: EXT4", "fileSystem: FAT32"), E, C::InvalidFileSystem, "fileSystem"),
        ("export target with ..", export() + "    targetDirectory: a/../b\n", E, C::InvalidManifestField, "operations[0].targetDirectory"),
        ("export recovery at root", export() + "recoveryDirectory: /\n", E, C::InvalidManifestField, "recoveryDirectory"),
        // Regions.
        ("glacier ap-southeast-1", glacier().replace("us-west-2", "ap-southeast-1"), I, C::InvalidManifestField, "operations[0].region"),
        ("ebs unknown region", ebs().replace("us-east-1", "eu-central-1"), I, C::InvalidManifestField, "operations[0].region"),
        ("two regions", ebs().replace("    deviceCapacityGreaterThan1TB: no\n", "    deviceCapacityGreaterThan1TB: no\n  - destination: ebs-snapshot\n    source: device\n    region: us-west-1\n    deviceCapacityGreaterThan1TB: no\n"), I, C::MultipleRegions, "operations[1].region"),
        ("two operations", glacier().replace("    archiveComment: nightly\n", "    archiveComment: nightly\n  - destination: glacier\n    source: device\n    region: us-west-2\n    vaultName: v2\n    archiveComment: b\n"), I, C::InvalidManifestField, "operations"),
        ("source not device", ebs().replace("source: device", "source: network"), I, C::InvalidManifestField, "operations[0].source"),
        // Enumerations.
        ("bad storageClass", s3() + "storageClass: GLACIER\n", I, C::InvalidManifestField, "storageClass"),
        ("bad acl", s3() + "acl: bucket-owner-full-control\n", I, C::InvalidManifestField, "acl"),
        ("bad serviceLevel", s3() + "serviceLevel: overnight\n", I, C::InvalidManifestField, "serviceLevel"),
        ("expedited abroad", s3_india(CUSTOMS) + "serviceLevel: expeditedShipping\n", I, C::InvalidManifestField, "serviceLevel"),
        ("bad boolean", s3() + "setContentEncodingForGzFiles: maybe\n", I, C::InvalidManifestField, "setContentEncodingForGzFiles"),
        // Headers and metadata.
        ("metadata key with space", s3() + "staticMetadata:\n  import time: now\n", I, C::InvalidManifestField, "staticMetadata.import time"),
        ("metadata value not ascii", s3() + "staticMetadata:\n  owner: Zoë\n", I, C::InvalidManifestField, "staticMetadata.owner"),
        ("metadata too large", s3() + &format!("staticMetadata:\n  a: {}\n", long(2048)), I, C::InvalidManifestField, "staticMetadata"),
        ("disk timestamp key clash", s3() + "diskTimestampMetadataKey: Stamp\nstaticMetadata:\n  stamp: x\n", I, C::InvalidManifestField, "diskTimestampMetadataKey"),
        ("disk timestamp key with colon", s3() + "diskTimestampMetadataKey: \"a:b\"\n", I, C::InvalidManifestField, "diskTimestampMetadataKey"),
        ("content type not a media type", s3() + "contentTypes:\n  jpg: jpeg\n", I, C::InvalidManifestField, "contentTypes.jpg"),
        ("content types contradict", s3() + "contentTypes:\n  jpg: image/jpeg\n  JPG: text/plain\n", I, C::InvalidManifestField, "contentTypes.JPG"),
        ("bad expires", s3() + "expires: 2010-01-07\n", I, C::InvalidManifestField, "expires"),
        ("cacheControl not ascii", s3() + "cacheControl: max-âge=1\n", I, C::InvalidManifestField, "cacheControl"),
        // ignore.
        ("ignore bad regex", s3() + "ignore:\n  - \"(unclosed\"\n", I, C::InvalidManifestField, "ignore[0]"),
        ("ignore glob", s3() + "ignore:\n  - '*.psd'\n", I, C::InvalidManifestField, "ignore[0]"),
        ("ignore not a list", s3() + "ignore: \\.psd$\n", I, C::InvalidManifestField, "ignore"),
        // substitutions.
        ("substitution empties prefix", s3() + "prefix: ZZ1/\nsubstitutions:\n  \"ZZ1/\" : \"\"\n", I, C::InvalidManifestField, "substitutions"),
        ("substitution empties target", export() + "    targetDirectory: data\nsubstitutions:\n  data: \"\"\n", E, C::InvalidManifestField, "substitutions"),
        ("substitution of empty string", s3() + "substitutions:\n  \"\" : \"x\"\n", I, C::InvalidManifestField, "substitutions"),
        // Addresses and customs.
        ("PO box", s3().replace("123 Any Street", "P.O. Box 123"), I, C::InvalidAddress, "returnAddress.street1"),
        ("unknown country", s3().replace("country: USA", "country: Atlantis"), I, C::InvalidAddress, "returnAddress.country"),
        ("US without state", s3().replace("  stateOrProvince: WA\n", ""), I, C::InvalidAddress, "returnAddress.stateOrProvince"),
        ("unknown address field", s3().replace("  city: Anytown\n", "  city: Anytown\n  county: King\n"), I, C::InvalidAddress, "returnAddress.county"),
        ("abroad without customs", s3_india(""), I, C::MissingCustoms, "customs"),
        ("customs subfield missing", s3_india(&CUSTOMS.replace("  exportCertifierName: John Doe\n", "")), I, C::MissingCustoms, "customs.exportCertifierName"),
        ("device too valuable", s3_india(&CUSTOMS.replace("250.00", "2500.00")), I, C::InvalidCustoms, "customs.deviceValue"),
        ("device value not a number", s3_india(&CUSTOMS.replace("250.00", "$250")), I, C::InvalidCustoms, "customs.deviceValue"),
        ("encrypted without classification", s3_india(&CUSTOMS.replace("  encryptionClassification: 5D992\n", "")), I, C::MissingCustoms, "customs.encryptionClassification"),
        ("bad deviceType", s3_india(&CUSTOMS.replace("externalStorageDevice", "floppy")), I, C::InvalidCustoms, "customs.deviceType"),
        ("bad deviceHTS", s3_india(&(CUSTOMS.to_owned() + "  deviceHTS: 8471\n")), I, C::InvalidCustoms, "customs.deviceHTS"),
        ("bad typeOfExport", s3_india(&(CUSTOMS.to_owned() + "  typeOfExport: gift\n")), I, C::InvalidCustoms, "customs.typeOfExport"),
        ("customs not a map", s3_india("customs: yes\n"), I, C::InvalidCustoms, "customs"),
        // notificationEmail.
        ("bad email", s3().replace("john.doe@example.com", "john.doe@example.com;jane"), I, C::InvalidManifestField, "notificationEmail"),
        ("no email in list", s3().replace("john.doe@example.com", ";"), I, C::MissingManifestField, "notificationEmail"),
        // Buckets.
        ("bad bucket", s3().replace("bucket: my-bucket", "bucket: my bucket"), I, C::InvalidManifestField, "bucket"),
    ];
    let mut failures = Vec::new();
    for (name, text, job_type, code, field) in &cases {
        match check(text.as_bytes(), *job_type) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(errors) => {
                let first = errors.first();
                if first.code != *code || first.field != *field {
                    failures.push(format!(
                        "{name}: expected {code} on `{field}`, got {} on `{}`: {}",
                        first.code, first.field, first.message
                    ));
                }
                let shown = errors.to_string();
                if !shown.starts_with(&format!("{}: ", code.exception_name())) {
                    failures.push(format!("{name}: display `{shown}`"));
                }
                if !field.is_empty() && !shown.contains(&format!(": {field}: ")) {
                    failures.push(format!("{name}: field not named in `{shown}`"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn eu_to_eu_needs_no_customs_but_eu_to_us_does() {
    let to_germany = s3()
        .replace("  stateOrProvince: WA\n", "")
        .replace("country: USA", "country: Germany")
        .replace("91011-1111", "10115");
    let ireland = Rules {
        facility_country: "IE".to_owned(),
        ..Rules::default()
    };
    assert!(parse(to_germany.as_bytes(), JobType::Import, &ireland).is_ok());
    let errors = parse(to_germany.as_bytes(), JobType::Import, &Rules::default()).err();
    assert_eq!(errors.map(|e| e.first().code), Some(C::MissingCustoms));
    // From Ireland to the USA customs are needed again.
    let errors = parse(s3().as_bytes(), JobType::Import, &ireland).err();
    assert_eq!(errors.map(|e| e.first().code), Some(C::MissingCustoms));
}

#[test]
fn messages_say_what_to_do() {
    let text = s3().replace("eraseDevice: yes", "eraseDevice: no");
    let shown = check(text.as_bytes(), JobType::Import)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        shown,
        "InvalidManifestFieldException: eraseDevice: line 3: eraseDevice is `no`; it must be yes (or true): the station overwrites every import device with zeros after loading it. Copy what you need to keep before you ship the device."
    );
    let text = s3() + &format!("logPrefix: {}\n", "x".repeat(1010));
    let shown = check(text.as_bytes(), JobType::Import)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        shown,
        "InvalidManifestFieldException: logPrefix: line 14: logPrefix + \"import-log-\" + the job ID is 1026 bytes; an S3 key is at most 1024. Shorten logPrefix by 2 bytes."
    );
}

#[test]
fn all_problems_are_reported_in_line_order() {
    let text = s3()
        .replace("eraseDevice: yes", "eraseDevice: no")
        .replace("bucket: my-bucket", "bucket: b")
        + "acl: everyone\n";
    let errors = check(text.as_bytes(), JobType::Import).err();
    let fields: Vec<String> = errors
        .map(|e| e.all().iter().map(|e| e.field.clone()).collect())
        .unwrap_or_default();
    assert_eq!(fields, ["eraseDevice", "bucket", "acl"]);
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let text = s3() + "trueCryptPassword: \"hunter*2\"\npinCode: 98x7\n";
    let errors = check(text.as_bytes(), JobType::Import).err();
    let shown = format!("{errors:?}");
    assert!(!shown.contains("hunter"), "{shown}");
    assert!(!shown.contains("98x7"), "{shown}");
    let m = accepted(&guide("s3-import-reference"), JobType::Import);
    let shown = format!("{m:?}");
    assert!(!shown.contains("SimpleButEasilyCracked"), "{shown}");
    assert!(!shown.contains("4321"), "{shown}");
}

#[test]
fn job_type_and_version_choose_the_kind() {
    assert_eq!(JobType::parse("IMPORT"), Some(JobType::Import));
    assert_eq!(JobType::parse("export"), Some(JobType::Export));
    assert_eq!(JobType::parse("copy"), None);
    // An import manifest submitted as an export job: its import options are named.
    let errors = check(s3().as_bytes(), JobType::Export).err();
    let first = errors.map(|e| e.first().clone());
    assert_eq!(
        first.as_ref().map(|e| (e.code, e.field.as_str())),
        Some((C::InvalidManifestField, "eraseDevice"))
    );
    let message = first.map(|e| e.message).unwrap_or_default();
    assert!(message.contains("check the JobType"), "{message}");
}
