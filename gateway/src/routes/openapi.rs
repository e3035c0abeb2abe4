//! The OpenAPI document of API v1, generated from the handlers and model types.

use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lightkeeper API",
        version = "1",
        description = "Stateful data API for astronomical alert streams. Errors: {\"error\":{\"code\",\"message\"}}. WebSocket: GET /v1/ws (see API.md)."
    ),
    paths(
        super::objects::summary,
        super::objects::lightcurve,
        super::objects::alerts,
        super::alerts::ingest,
        super::health::cluster,
        super::health::healthz,
        super::health::readyz,
        super::admin::promote,
        super::admin::drain,
        super::admin::drain_node,
        super::admin::decommission,
    ),
    components(schemas(
        lightkeeper_storage::object::ObjectSummary,
        lightkeeper_storage::object::BandLatest,
        lightkeeper_storage::object::AlertRef,
        lightkeeper_storage::object::AlertSource,
        lightkeeper_storage::model::LightPoint,
        lightkeeper_storage::model::SolarSystemMatch,
        super::objects::Lightcurve,
        super::objects::AlertHistory,
        super::alerts::Accepted,
        super::health::ClusterView,
        super::health::PartitionView,
        super::admin::PromoteReport,
        super::admin::NodeDrainReport,
        super::admin::DecommissionReport,
        super::admin::NodeHandover,
    ))
)]
pub struct ApiDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
