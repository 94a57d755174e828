//! POST `/images/delta?src=&dest=&t=` (balenaEngine's endpoint): creates a delta image that rebuilds `dest`
//! on a device that has `src`. The answer is a JSON message stream as balenaEngine's: progress per target
//! layer, then `Normal size: …, Delta size: …, N.NNx improvement` and `Created delta: sha256:…` (and
//! `Successfully tagged …` with `t`).

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use engine::digest::Digest;
use engine::{images, reference};

use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::stream::streamed;
use crate::human;
use crate::state::Daemon;

pub async fn delta(State(d): State<Arc<Daemon>>, p: Params) -> Response {
    let (Some(src), Some(dest)) = (p.get("src").map(str::to_owned), p.get("dest").map(str::to_owned)) else {
        return ApiError::bad_request("src and dest are required").into_response();
    };
    let tag = p.get("t").map(str::to_owned);
    streamed(move |m| {
        let (report, tag) = d.with_writer(|s| {
            let base = images::resolve(s, &src)?;
            let target = images::resolve(s, &dest)?;
            let tag = tag.as_deref().map(reference::normalize).transpose()?;
            let meta = s.metadata();
            let base_chains: HashSet<Digest> = meta.images[&base].chain_ids().into_iter().collect();
            let rec = &meta.images[&target];
            let layers: Vec<(String, bool)> = rec
                .diff_ids
                .iter()
                .zip(rec.chain_ids())
                .map(|(diff, chain)| (diff.short().to_owned(), base_chains.contains(&chain)))
                .collect();
            for (short, _) in &layers {
                m.progress(short, "Waiting", None, None);
            }
            let report = engine::delta::create::create(s, &base.to_string(), &target.to_string(), tag.as_deref())?;
            for (short, common) in &layers {
                m.progress(short, if *common { "Skipping common layer" } else { "Delta complete" }, None, None);
            }
            Ok((report, tag))
        })?;
        let ratio = match (report.target_bytes, report.delta_bytes) {
            (0, _) => 1.0,
            (_, 0) => f64::INFINITY,
            (t, dl) => t as f64 / dl as f64,
        };
        m.status(&format!(
            "Normal size: {}, Delta size: {}, {ratio:.2}x improvement",
            human::size(report.target_bytes),
            human::size(report.delta_bytes)
        ));
        m.status(&format!("Created delta: {}", report.id));
        if let Some(t) = tag {
            d.events.image("tag", &report.id.to_string(), &t);
            m.status(&format!("Successfully tagged {t}"));
        }
        Ok(())
    })
    .await
}
