//! The operations of a scenario (README, "Operations and their results"): each step sends
//! its requests, reads its answers and returns its result object or its failure.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use mobilesam_checkpoint::digest::sha256_hex;
use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_anything_client::SegmentAnythingClient;
use mobilesam_proto::v1::segment_request::Request;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tonic::transport::Channel;
use tonic::Status;

use super::failure::Failure;
use super::prompt::{generate_params, prompt};
use super::results::{error_entry, ImageReadyResult, MasksResult, ModelInfoResult};
use super::scenario::{ImageSpec, Op, Open, OpenFrom, PromptSpec};
use super::session::Session;
use crate::load::conversation::Conversation;

/// Runs steps against one server, holding the scenario's open sessions by name.
pub struct Runner {
    /// `http://host:port` of the server.
    uri: String,
    /// The scenario file's directory (image paths are relative to it).
    dir: PathBuf,
    /// Longest wait for any one answer.
    timeout: Duration,
    sessions: HashMap<String, Session>,
}

impl Runner {
    /// A runner with no session open.
    pub fn new(uri: String, dir: PathBuf, timeout: Duration) -> Self {
        Runner {
            uri,
            dir,
            timeout,
            sessions: HashMap::new(),
        }
    }

    /// Runs one step: its result object, or why it failed.
    pub async fn run(&mut self, op: &Op) -> Result<Value, Failure> {
        match op {
            Op::ModelInfo => self.model_info().await,
            Op::Open(open) => self.open(open).await,
            Op::Predict { session, prompt } => self.predict(session, prompt).await,
            Op::SetImage {
                session,
                image,
                frame_index,
            } => self.set_image(session, image, *frame_index).await,
            Op::Prefetch { session, images } => self.prefetch(session, images).await,
            Op::Generate { session, params } => self.generate(session, params).await,
            Op::Pipeline { session, prompts } => self.pipeline(session, prompts).await,
            Op::Close { session } => self.close(session).await,
        }
    }

    async fn model_info(&mut self) -> Result<Value, Failure> {
        let channel = Channel::from_shared(self.uri.clone())
            .map_err(|e| Failure::client(format!("bad address {}: {e}", self.uri)))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .connect()
            .await
            .map_err(|e| {
                Failure::status(&Status::unavailable(format!(
                    "cannot connect to {}: {e}",
                    self.uri
                )))
            })?;
        let info = SegmentAnythingClient::new(channel)
            .get_model_info(v1::GetModelInfoRequest {})
            .await
            .map_err(|s| Failure::status(&s))?
            .into_inner();
        to_value(ModelInfoResult::from(&info))
    }

    async fn open(&mut self, open: &Open) -> Result<Value, Failure> {
        if self.sessions.contains_key(&open.session) {
            return Err(Failure::client(format!(
                "session {:?} is already open",
                open.session
            )));
        }
        let mut message = v1::SetImage {
            frame_index: open.frame_index,
            ..Default::default()
        };
        match &open.from {
            OpenFrom::Image(image) => message.image = self.image(image)?,
            OpenFrom::Resume(name) => message.session_id = self.session(name)?.session_id.clone(),
            OpenFrom::SessionId(id) => message.session_id = id.clone(),
        }
        let conversation = Conversation::open(&self.uri, self.timeout)
            .await
            .map_err(|s| Failure::status(&s))?;
        let mut session = Session::new(conversation, self.timeout);
        session.send(Request::SetImage(message)).await?;
        // On an error the session is dropped here: its stream is closed, the name unbound.
        let ready = session.image().await?;
        session.session_id = ready.session_id.clone();
        self.sessions.insert(open.session.clone(), session);
        to_value(ImageReadyResult::from_wire(&ready)?)
    }

    async fn predict(&mut self, name: &str, spec: &PromptSpec) -> Result<Value, Failure> {
        let session = self.session(name)?;
        let request = prompt(spec, session.request_id()).map_err(Failure::client)?;
        let request_id = request.request_id;
        session.send(Request::Prompt(request)).await?;
        let answer = session.prompts(&[request_id]).await.into_iter().next();
        let masks = answer.unwrap_or_else(|| Err(Failure::client("no answer")))?;
        to_value(MasksResult::from_wire(&masks)?)
    }

    async fn set_image(
        &mut self,
        name: &str,
        image: &ImageSpec,
        frame_index: Option<i64>,
    ) -> Result<Value, Failure> {
        let message = v1::SetImage {
            image: self.image(image)?,
            frame_index,
            ..Default::default()
        };
        let session = self.session(name)?;
        session.send(Request::SetImage(message)).await?;
        let ready = session.image().await?;
        session.session_id = ready.session_id.clone();
        to_value(ImageReadyResult::from_wire(&ready)?)
    }

    async fn prefetch(&mut self, name: &str, images: &[ImageSpec]) -> Result<Value, Failure> {
        let images = images
            .iter()
            .map(|spec| self.image(spec))
            .collect::<Result<Vec<_>, _>>()?;
        let sha256s: Vec<String> = images.iter().map(|bytes| sha256_hex(bytes)).collect();
        let session = self.session(name)?;
        for image in images {
            let message = v1::SetImage {
                image,
                prefetch: true,
                ..Default::default()
            };
            session.send(Request::SetImage(message)).await?;
        }
        let mut entries = Vec::with_capacity(sha256s.len());
        for answer in session.prefetches(&sha256s).await {
            entries.push(match answer {
                Ok(ready) => to_value(ImageReadyResult::from_wire(&ready)?)?,
                Err(failure) => error_entry(&failure),
            });
        }
        Ok(json!({ "images": entries }))
    }

    async fn generate(
        &mut self,
        name: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, Failure> {
        let params = generate_params(params).map_err(Failure::client)?;
        let session = self.session(name)?;
        let request_id = session.request_id();
        let message = v1::GenerateMasks {
            request_id,
            params: Some(params),
        };
        session.send(Request::GenerateMasks(message)).await?;
        to_value(session.generation(request_id).await?)
    }

    async fn pipeline(&mut self, name: &str, specs: &[PromptSpec]) -> Result<Value, Failure> {
        let session = self.session(name)?;
        let requests = specs
            .iter()
            .map(|spec| prompt(spec, session.request_id()).map_err(Failure::client))
            .collect::<Result<Vec<_>, _>>()?;
        let request_ids: Vec<u64> = requests.iter().map(|r| r.request_id).collect();
        for (spec, request) in specs.iter().zip(requests) {
            if spec.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(spec.delay_ms)).await;
            }
            session.send(Request::Prompt(request)).await?;
        }
        let mut answers = Vec::with_capacity(request_ids.len());
        for answer in session.prompts(&request_ids).await {
            answers.push(match answer {
                Ok(masks) => to_value(MasksResult::from_wire(&masks)?)?,
                Err(failure) => error_entry(&failure),
            });
        }
        Ok(json!({ "answers": answers }))
    }

    async fn close(&mut self, name: &str) -> Result<Value, Failure> {
        let session = self.sessions.remove(name).ok_or_else(|| not_open(name))?;
        session.close().await?;
        Ok(json!({}))
    }

    /// The open session named `name`.
    fn session(&mut self, name: &str) -> Result<&mut Session, Failure> {
        self.sessions.get_mut(name).ok_or_else(|| not_open(name))
    }

    /// An image's bytes; a file that cannot be read is the client's failure.
    fn image(&self, spec: &ImageSpec) -> Result<Vec<u8>, Failure> {
        spec.read(&self.dir)
            .map_err(|e| Failure::client(format!("{e:#}")))
    }
}

fn not_open(name: &str) -> Failure {
    Failure::client(format!("session {name:?} is not open"))
}

fn to_value<T: Serialize>(result: T) -> Result<Value, Failure> {
    serde_json::to_value(result)
        .map_err(|e| Failure::client(format!("cannot write the result: {e}")))
}
