//! GetShippingLabel: a PDF label for shipping the devices of one or more jobs to the station.

use pipelines::manifest::{self, JobType};

use super::{owned_job, require_live, ApiError};
use crate::api::{xml, ApiState, Request};

/// Handles GetShippingLabel.
pub fn handle(state: &ApiState, req: &Request<'_>) -> Result<xml::Body, ApiError> {
    let mut job_ids: Vec<(usize, &str)> = req
        .params
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix("jobIds.member.")?.parse::<usize>().ok()?;
            Some((n, v.as_str()))
        })
        .collect();
    job_ids.sort();
    if job_ids.is_empty() {
        return Err(ApiError::missing_parameter("jobIds.member.1"));
    }
    let mut jobs = Vec::new();
    for (_, id) in &job_ids {
        let job = owned_job(state, req, id)?;
        require_live(&job)?;
        jobs.push(job);
    }
    // The sender's address: the request's fields, else the first job's return address.
    let first_manifest = jobs.first().and_then(|job| {
        let job_type = JobType::parse(&job.job_type)?;
        manifest::parse(job.manifest.as_bytes(), job_type, &state.rules).ok()
    });
    let from_manifest = first_manifest.as_ref().map(|m| &m.common.return_address);
    let field = |name: &str, fallback: Option<&str>| -> String {
        req.param(name)
            .map(str::to_owned)
            .or_else(|| fallback.map(str::to_owned))
            .unwrap_or_default()
    };
    let sender = crate::pdf::Address {
        name: field("name", from_manifest.map(|a| a.name.as_str())),
        company: field("company", from_manifest.and_then(|a| a.company.as_deref())),
        street: [
            field("street1", from_manifest.map(|a| a.street1.as_str())),
            field("street2", from_manifest.and_then(|a| a.street2.as_deref())),
            field("street3", from_manifest.and_then(|a| a.street3.as_deref())),
        ],
        city: field("city", from_manifest.map(|a| a.city.as_str())),
        state_or_province: field(
            "stateOrProvince",
            from_manifest.and_then(|a| a.state_or_province.as_deref()),
        ),
        postal_code: field("postalCode", from_manifest.map(|a| a.postal_code.as_str())),
        country: field("country", from_manifest.map(|a| a.country.as_str())),
        phone: field(
            "phoneNumber",
            from_manifest.map(|a| a.phone_number.as_str()),
        ),
    };
    if sender.name.is_empty() || sender.street[0].is_empty() || sender.city.is_empty() {
        return Err(ApiError::invalid_parameter(
            "The label needs the sender's name, street1 and city; give them as parameters.",
        ));
    }
    let ids: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
    let pdf = crate::pdf::shipping_label(&state.station_name, &sender, &ids);
    let token = state
        .store
        .put_document(ids.first().copied(), "application/pdf", &pdf)?;
    let mut body = xml::Body::new();
    body.text(
        "ShippingLabelURL",
        &format!("{}/documents/{token}.pdf", req.base_url),
    );
    Ok(body)
}
