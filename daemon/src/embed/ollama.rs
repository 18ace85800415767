//! An Ollama server's embeddings API as an [`Embedder`], over plain http.
//!
//! Requests: `POST {url}/api/embed` with `{"model": M, "input": [texts]}`, answered by
//! `{"embeddings": [[f32; dim]; n]}`. Servers older than that endpoint answer 404; then each text
//! goes alone to `POST {url}/api/embeddings` with `{"model": M, "prompt": text}`, answered by
//! `{"embedding": [f32; dim]}`, and the client keeps using that endpoint.
//!
//! Only `http://` URLs work: ureq is built without TLS (enable its `rustls` feature for https).
//! The dimension is learned at [`Ollama::connect`] by embedding one probe text, so a wrong URL or
//! model fails when the collection is created rather than at the first document.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use super::{EmbedError, Embedder};

/// Texts per `/api/embed` request, which bounds each response (the HTTP client reads at most
/// 10 MB: 32 vectors of 4096 dims as JSON are about 3 MB).
pub const TEXTS_PER_REQUEST: usize = 32;

/// A server that accepts no connection in this time is reported unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one request may take: a cold server loads the model on the first request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Response bodies quoted in errors are cut to this many bytes.
const ERROR_BODY_MAX: usize = 512;

pub struct Ollama {
    agent: ureq::Agent,
    url: String,
    model: String,
    name: String,
    dim: usize,
    /// Set once `/api/embed` answered 404: use `/api/embeddings` from then on.
    legacy: AtomicBool,
}

impl Ollama {
    /// Connects to the server at `url` (no trailing '/') and learns the model's dimension.
    pub fn connect(url: &str, model: &str) -> Result<Ollama, EmbedError> {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build();
        let mut ollama = Ollama {
            agent: config.into(),
            url: url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            name: format!("ollama:{}:{model}", url.trim_end_matches('/')),
            dim: 0,
            legacy: AtomicBool::new(false),
        };
        let probe = ollama.embed_unchecked(&["dimension probe"])?;
        ollama.dim = probe[0].len();
        if ollama.dim == 0 {
            return Err(ollama.bad_response(&ollama.endpoint("embed"), "empty embedding"));
        }
        Ok(ollama)
    }

    fn endpoint(&self, name: &str) -> String {
        format!("{}/api/{name}", self.url)
    }

    fn bad_response(&self, url: &str, reason: &str) -> EmbedError {
        EmbedError::BadResponse { url: url.to_string(), reason: reason.to_string() }
    }

    /// Embeds without checking dimensions against `self.dim` (which the probe has yet to learn).
    fn embed_unchecked(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(TEXTS_PER_REQUEST) {
            if !self.legacy.load(Ordering::Relaxed) {
                match self.embed_batch(batch)? {
                    Some(batch_vectors) => {
                        vectors.extend(batch_vectors);
                        continue;
                    }
                    None => self.legacy.store(true, Ordering::Relaxed),
                }
            }
            for text in batch {
                vectors.push(self.embed_legacy(text)?);
            }
        }
        Ok(vectors)
    }

    /// `/api/embed`; `None` when the server does not have that endpoint (404).
    fn embed_batch(&self, texts: &[&str]) -> Result<Option<Vec<Vec<f32>>>, EmbedError> {
        let url = self.endpoint("embed");
        let Some(body) = self.post(&url, &json!({"model": self.model, "input": texts}))? else {
            return Ok(None);
        };
        let embeddings = body
            .get("embeddings")
            .and_then(Value::as_array)
            .ok_or_else(|| self.bad_response(&url, "no \"embeddings\" array"))?;
        if embeddings.len() != texts.len() {
            let reason = format!("{} embeddings for {} texts", embeddings.len(), texts.len());
            return Err(self.bad_response(&url, &reason));
        }
        let vectors = embeddings.iter().map(|v| self.vector(&url, v)).collect::<Result<_, _>>()?;
        Ok(Some(vectors))
    }

    /// `/api/embeddings`, one text per request.
    fn embed_legacy(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let url = self.endpoint("embeddings");
        let body = self.post(&url, &json!({"model": self.model, "prompt": text}))?;
        let body = body.ok_or_else(|| EmbedError::HttpStatus {
            url: url.clone(),
            status: 404,
            body: "neither /api/embed nor /api/embeddings exists: is this an Ollama server?".to_string(),
        })?;
        let vector = body.get("embedding").ok_or_else(|| self.bad_response(&url, "no \"embedding\""))?;
        self.vector(&url, vector)
    }

    fn vector(&self, url: &str, value: &Value) -> Result<Vec<f32>, EmbedError> {
        let numbers = value.as_array().ok_or_else(|| self.bad_response(url, "an embedding is not an array"))?;
        numbers
            .iter()
            .map(|x| x.as_f64().map(|x| x as f32))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| self.bad_response(url, "an embedding holds a non-number"))
    }

    /// POSTs `request` as JSON; the parsed JSON answer, or `None` on 404.
    fn post(&self, url: &str, request: &Value) -> Result<Option<Value>, EmbedError> {
        let unreachable = |e: ureq::Error| EmbedError::HttpUnreachable { url: url.to_string(), reason: e.to_string() };
        let mut response = self
            .agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(request.to_string())
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(unreachable)?;
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            let body = truncate(&body, ERROR_BODY_MAX).to_string();
            return Err(EmbedError::HttpStatus { url: url.to_string(), status, body });
        }
        serde_json::from_str(&body).map(Some).map_err(|e| self.bad_response(url, &format!("not JSON: {e}")))
    }
}

fn truncate(text: &str, bytes_max: usize) -> &str {
    let mut end = text.len().min(bytes_max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Embedder for Ollama {
    fn dim(&self) -> usize {
        self.dim
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let vectors = self.embed_unchecked(texts)?;
        assert_eq!(vectors.len(), texts.len());
        if let Some(v) = vectors.iter().find(|v| v.len() != self.dim) {
            let reason = format!("an embedding has {} dims, the model had {}", v.len(), self.dim);
            return Err(self.bad_response(&self.url, &reason));
        }
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    //! Goal: the client speaks both Ollama endpoints and reports failures clearly. Method: a tiny
    //! HTTP server on 127.0.0.1 (a std TcpListener thread) answers each request from a closure
    //! over its path and JSON body, and records what it was sent.
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    type Handler = dyn Fn(&str, &Value) -> (u16, String) + Send + Sync;

    struct Server {
        url: String,
        requests: Arc<Mutex<Vec<(String, Value)>>>,
    }

    /// Serves `handler` until the test process exits (the thread is detached).
    fn serve(handler: Box<Handler>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let stream = stream.unwrap();
                let (path, body) = read_request(&stream);
                log.lock().unwrap().push((path.clone(), body.clone()));
                let (status, answer) = handler(&path, &body);
                write!(
                    &stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .unwrap();
            }
        });
        Server { url, requests }
    }

    fn read_request(stream: &std::net::TcpStream) -> (String, Value) {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let path = line.split(' ').nth(1).unwrap().to_string();
        let mut content_length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body).unwrap();
        (path, serde_json::from_slice(&body).unwrap())
    }

    /// A fake 3-dim model: text "abc" embeds to [len, first byte, 1].
    fn fake_vector(text: &str) -> Vec<f32> {
        vec![text.len() as f32, text.bytes().next().unwrap_or(0) as f32, 1.0]
    }

    #[test]
    fn api_embed_batches() {
        let server = serve(Box::new(|path, body| {
            assert_eq!(path, "/api/embed");
            assert_eq!(body["model"], "fake");
            let texts = body["input"].as_array().unwrap();
            let vectors: Vec<_> = texts.iter().map(|t| fake_vector(t.as_str().unwrap())).collect();
            (200, json!({"embeddings": vectors}).to_string())
        }));
        let ollama = Ollama::connect(&server.url, "fake").unwrap();
        assert_eq!(ollama.dim(), 3);
        assert_eq!(ollama.name(), format!("ollama:{}:fake", server.url));
        let texts: Vec<String> = (0..70).map(|i| format!("t{i}")).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = ollama.embed(&texts).unwrap();
        let want: Vec<_> = texts.iter().map(|t| fake_vector(t)).collect();
        assert_eq!(vectors, want);
        // The probe, then 70 texts in requests of at most 32.
        let sizes: Vec<usize> =
            server.requests.lock().unwrap().iter().map(|(_, b)| b["input"].as_array().unwrap().len()).collect();
        assert_eq!(sizes, [1, 32, 32, 6]);
        assert!(ollama.embed(&[]).unwrap().is_empty());
    }

    #[test]
    fn falls_back_to_api_embeddings_on_404() {
        let server = serve(Box::new(|path, body| match path {
            "/api/embed" => (404, "404 page not found".to_string()),
            "/api/embeddings" => {
                let text = body["prompt"].as_str().unwrap();
                (200, json!({"embedding": fake_vector(text)}).to_string())
            }
            _ => panic!("unexpected path {path}"),
        }));
        let ollama = Ollama::connect(&server.url, "fake").unwrap();
        assert_eq!(ollama.dim(), 3);
        assert_eq!(ollama.embed(&["ab", "xyz"]).unwrap(), [fake_vector("ab"), fake_vector("xyz")]);
        // /api/embed is tried once; after its 404 only the old endpoint is used.
        let paths: Vec<String> = server.requests.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(paths, ["/api/embed", "/api/embeddings", "/api/embeddings", "/api/embeddings"]);
    }

    #[test]
    fn server_errors_name_url_and_status() {
        let server = serve(Box::new(|_, _| (500, "{\"error\":\"model 'nope' not found\"}".to_string())));
        let message = Ollama::connect(&server.url, "nope").err().unwrap().to_string();
        assert!(message.contains(&format!("{}/api/embed", server.url)), "{message}");
        assert!(message.contains("HTTP 500"), "{message}");
        assert!(message.contains("model 'nope' not found"), "{message}");
    }

    #[test]
    fn bad_json_is_a_bad_response() {
        let server = serve(Box::new(|_, _| (200, "{\"embeddings\": [[1, \"x\"]]}".to_string())));
        let error = Ollama::connect(&server.url, "m").err().unwrap();
        assert!(matches!(error, EmbedError::BadResponse { .. }), "{error}");
    }

    #[test]
    fn server_down_is_unreachable() {
        // Bind then drop a listener so the port is (very likely) closed.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let error = Ollama::connect(&url, "m").err().unwrap();
        assert!(matches!(error, EmbedError::HttpUnreachable { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains(&format!("cannot reach the embedding server at {url}/api/embed")), "{message}");
    }
}
