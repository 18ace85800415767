//! Query files: the interface for shell tools. A caller writes JSON query objects into a file of
//! a collection's `.vexfs-query/` directory, one per line, and reading the file back runs them and
//! returns one JSON line per query (`docs/COLLECTIONS.md`, "Query files", has the language).
//!
//! Each user has a namespace of their own in every query directory: a name is looked up, listed,
//! created and removed among the caller's own files only, so another user can neither read nor
//! replace them, nor learn their names. The files live in memory until unlinked or the daemon
//! stops; what each user's files hold is bounded ([`limits`]).
//!
//! Consecutive k-NN queries by vector that share k and filter run as one batch, as a program
//! would send them: the exact search then scores them together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::Value;

use super::limits::{
    Shares, QUERY_BYTES_PER_USER_MAX, QUERY_FILES_PER_USER_MAX, QUERY_FILE_BYTES_MAX, QUERY_LINES_MAX,
    QUERY_RESULTS_BYTES_MAX,
};
use super::{access, Bound, Caller, Collections, Interrupt, Result, SearchRequest, ServiceError};
use crate::storage::Storage;
use crate::text::TextHit;
use crate::vector::search::Neighbor;
use crate::vector::{K_MAX, RANGE_LIMIT_MAX};

/// k when a query names none.
const K_DEFAULT: usize = 10;
/// The most results per query of a range search that names no limit.
const RANGE_LIMIT_DEFAULT: usize = 1000;

/// What a door shows of a query file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryAttr {
    /// The file's id, unique while the daemon runs.
    pub id: u64,
    pub dir: u64,
    pub name: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    /// The results' length once run, else the query text's.
    pub size: u64,
    /// Seconds since the epoch of the last change.
    pub mtime: u64,
}

struct QueryFile {
    dir: u64,
    name: Vec<u8>,
    uid: u32,
    gid: u32,
    text: Vec<u8>,
    results: Option<Arc<Vec<u8>>>,
    mtime: u64,
}

impl QueryFile {
    fn bytes(&self) -> usize {
        self.text.len() + self.results.as_ref().map_or(0, |r| r.len())
    }

    fn attr(&self, id: u64) -> QueryAttr {
        QueryAttr {
            id,
            dir: self.dir,
            name: self.name.clone(),
            uid: self.uid,
            gid: self.gid,
            size: self.results.as_ref().map_or(self.text.len(), |r| r.len()) as u64,
            mtime: self.mtime,
        }
    }
}

struct Table {
    next_id: u64,
    files: HashMap<u64, QueryFile>,
    /// (collection, user, name) to id.
    names: HashMap<(u64, u32, Vec<u8>), u64>,
    users: Shares,
}

impl Default for Table {
    fn default() -> Table {
        Table {
            next_id: 0,
            files: HashMap::new(),
            names: HashMap::new(),
            users: Shares::new("query files", QUERY_FILES_PER_USER_MAX, QUERY_BYTES_PER_USER_MAX),
        }
    }
}

impl Table {
    fn file(&mut self, id: u64) -> Result<&mut QueryFile> {
        self.files.get_mut(&id).ok_or(ServiceError::Stale)
    }

    fn remove(&mut self, id: u64) {
        if let Some(file) = self.files.remove(&id) {
            self.names.remove(&(file.dir, file.uid, file.name.clone()));
            self.users.remove(file.uid, file.bytes());
        }
    }
}

/// The query files of every collection.
#[derive(Default)]
pub struct QueryFiles {
    table: Mutex<Table>,
}

impl QueryFiles {
    /// Drops the query files of a collection that is going away.
    pub fn forget_collection(&self, dir: u64) {
        let mut table = self.table.lock();
        let ids: Vec<u64> = table.files.iter().filter(|(_, f)| f.dir == dir).map(|(id, _)| *id).collect();
        for id in ids {
            table.remove(id);
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Only the user who made a query file (or root) may use it.
fn check_owner(caller: &Caller, file: &QueryFile) -> Result<()> {
    if caller.is_root() || caller.uid == file.uid {
        Ok(())
    } else {
        Err(ServiceError::Access("a query file is private to the user who made it".into()))
    }
}

fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.contains(&b'/') || name.contains(&0) || name == b"." || name == b".."
    {
        return Err(ServiceError::invalid("a query file name is 1..=255 bytes without '/' or NUL"));
    }
    Ok(())
}

impl<S: Storage> Collections<S> {
    /// Makes query file `name` in collection `dir` for `caller`, who needs read permission on
    /// the collection. An existing file of the caller's is returned as it is, unless `exclusive`.
    pub fn query_create(&self, caller: &Caller, dir: u64, name: &[u8], exclusive: bool) -> Result<QueryAttr> {
        check_name(name)?;
        self.collection(caller, dir, access::READ, "making a query file")?;
        let mut table = self.queries.table.lock();
        if let Some(&id) = table.names.get(&(dir, caller.uid, name.to_vec())) {
            if exclusive {
                return Err(ServiceError::Exists(String::from_utf8_lossy(name).into_owned()));
            }
            return Ok(table.files[&id].attr(id));
        }
        table.users.add(caller.uid)?;
        table.next_id += 1;
        let id = table.next_id;
        let file = QueryFile {
            dir,
            name: name.to_vec(),
            uid: caller.uid,
            gid: caller.gid,
            text: Vec::new(),
            results: None,
            mtime: now_secs(),
        };
        let attr = file.attr(id);
        table.files.insert(id, file);
        table.names.insert((dir, caller.uid, name.to_vec()), id);
        Ok(attr)
    }

    /// The caller's query file `name` in collection `dir`, if it has one.
    pub fn query_lookup(&self, caller: &Caller, dir: u64, name: &[u8]) -> Option<QueryAttr> {
        let table = self.queries.table.lock();
        let id = *table.names.get(&(dir, caller.uid, name.to_vec()))?;
        Some(table.files[&id].attr(id))
    }

    /// The caller's query files in collection `dir`, by name.
    pub fn query_list(&self, caller: &Caller, dir: u64) -> Vec<QueryAttr> {
        let table = self.queries.table.lock();
        let mut files: Vec<QueryAttr> = table
            .files
            .iter()
            .filter(|(_, f)| f.dir == dir && f.uid == caller.uid)
            .map(|(&id, f)| f.attr(id))
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        files
    }

    /// The attributes of query file `id`.
    pub fn query_attr(&self, id: u64) -> Result<QueryAttr> {
        let mut table = self.queries.table.lock();
        Ok(table.file(id)?.attr(id))
    }

    /// Opens query file `id` (emptying it with `truncate`).
    pub fn query_open(&self, caller: &Caller, id: u64, truncate: bool) -> Result<()> {
        if truncate {
            self.query_truncate(caller, id, 0)?;
        }
        let mut table = self.queries.table.lock();
        check_owner(caller, table.file(id)?)
    }

    /// Writes `data` at `offset` of query file `id`'s text; its results are dropped.
    pub fn query_write(&self, caller: &Caller, id: u64, offset: u64, data: &[u8]) -> Result<()> {
        let end = usize::try_from(offset).ok().and_then(|o| o.checked_add(data.len())).unwrap_or(usize::MAX);
        if end > QUERY_FILE_BYTES_MAX {
            return Err(ServiceError::limit(
                Bound::FileSize,
                format!("a query file holds at most {QUERY_FILE_BYTES_MAX} bytes of queries"),
            ));
        }
        self.query_resize(caller, id, |len| len.max(end), |text| text[offset as usize..end].copy_from_slice(data))
    }

    /// Cuts or extends query file `id`'s text to `size` bytes; its results are dropped.
    pub fn query_truncate(&self, caller: &Caller, id: u64, size: u64) -> Result<QueryAttr> {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > QUERY_FILE_BYTES_MAX {
            return Err(ServiceError::limit(
                Bound::FileSize,
                format!("a query file holds at most {QUERY_FILE_BYTES_MAX} bytes of queries"),
            ));
        }
        self.query_resize(caller, id, |_| size, |_| ())?;
        self.query_attr(id)
    }

    /// Sets query file `id`'s text length to `len(old)`, zero-filling growth, then lets `write`
    /// change it; the owner's share pays for the difference and the dropped results come back.
    fn query_resize(
        &self,
        caller: &Caller,
        id: u64,
        len: impl FnOnce(usize) -> usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        let mut table = self.queries.table.lock();
        let file = table.file(id)?;
        check_owner(caller, file)?;
        let (uid, old_bytes) = (file.uid, file.bytes());
        let new_len = len(file.text.len());
        table.users.charge(uid, new_len as isize - old_bytes as isize)?;
        let file = table.file(id)?;
        file.results = None;
        file.text.resize(new_len, 0);
        write(&mut file.text);
        file.mtime = now_secs();
        Ok(())
    }

    /// Reads `size` bytes at `offset` of query file `id`'s results, running its queries first if
    /// they have not run since the text last changed. The caller needs read permission on the
    /// collection now, as it did to make the file.
    pub fn query_read(
        &self,
        caller: &Caller,
        id: u64,
        offset: u64,
        size: u32,
        interrupt: &Interrupt,
    ) -> Result<Vec<u8>> {
        let (dir, text, results, share_left) = {
            let mut table = self.queries.table.lock();
            let file = table.file(id)?;
            check_owner(caller, file)?;
            let (dir, text, results, uid) = (file.dir, file.text.clone(), file.results.clone(), file.uid);
            (dir, text, results, table.users.bytes_left(uid))
        };
        let results = match results {
            Some(results) => results,
            None => {
                self.collection(caller, dir, access::READ, "running queries")?;
                let budget = QUERY_RESULTS_BYTES_MAX.min(share_left);
                let results = Arc::new(self.run_queries(caller, dir, &text, budget, interrupt)?);
                let mut table = self.queries.table.lock();
                let uid = table.file(id)?.uid;
                table.users.charge(uid, results.len() as isize)?;
                table.file(id)?.results = Some(Arc::clone(&results));
                results
            }
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(results.len());
        let end = start.saturating_add(size as usize).min(results.len());
        Ok(results[start..end].to_vec())
    }

    /// Removes the caller's query file `name` in collection `dir`.
    pub fn query_unlink(&self, caller: &Caller, dir: u64, name: &[u8]) -> Result<()> {
        let mut table = self.queries.table.lock();
        let id = *table
            .names
            .get(&(dir, caller.uid, name.to_vec()))
            .ok_or_else(|| ServiceError::NotFound(String::from_utf8_lossy(name).into_owned()))?;
        table.remove(id);
        Ok(())
    }

    /// Runs the JSON queries in `text` (one object per line) and returns their JSON-lines
    /// answers, at most `budget` bytes of them (see `docs/COLLECTIONS.md`, "Query files").
    fn run_queries(
        &self,
        caller: &Caller,
        dir: u64,
        text: &[u8],
        budget: usize,
        interrupt: &Interrupt,
    ) -> Result<Vec<u8>> {
        let text = String::from_utf8_lossy(text);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut out = Answers { bytes: Vec::new(), budget, answered: 0 };
        let mut index = 0;
        while index < lines.len() {
            if interrupt.is_set() {
                return Err(ServiceError::Interrupted);
            }
            if index >= QUERY_LINES_MAX {
                out.stop(&format!("a query file runs at most {QUERY_LINES_MAX} queries"));
                break;
            }
            let query = parse_query(lines[index]);
            let batch = match &query {
                Ok(Query::Knn { k, filter, .. }) => lines[index..]
                    .iter()
                    .take(QUERY_LINES_MAX - index)
                    .map(|line| parse_query(line))
                    .take_while(|q| matches!(q, Ok(Query::Knn { k: k2, filter: f2, .. }) if k2 == k && f2 == filter))
                    .count(),
                _ => 1,
            };
            let answered = if batch > 1 {
                let queries: Vec<Query> =
                    lines[index..index + batch].iter().filter_map(|l| parse_query(l).ok()).collect();
                self.answer_batch(caller, dir, index, &queries, &mut out)
            } else {
                self.answer_one(caller, dir, index, query, interrupt, &mut out)
            };
            if !answered {
                out.stop(&format!(
                    "the results of the queries before this one fill the {budget} bytes a query file may produce; \
                         run the rest from another file"
                ));
                break;
            }
            index += batch;
        }
        Ok(out.bytes)
    }

    /// Answers one query at `index`; false when its answer no longer fits the budget.
    fn answer_one(
        &self,
        caller: &Caller,
        dir: u64,
        index: usize,
        query: std::result::Result<Query, String>,
        interrupt: &Interrupt,
        out: &mut Answers,
    ) -> bool {
        let found = query.and_then(|query| match query {
            Query::Text { text, k, filter } => self
                .search_text(caller, dir, &text, k, filter.as_deref(), interrupt)
                .map(Found::Text)
                .map_err(|e| e.to_string()),
            Query::Knn { vector, k, filter } => self
                .search(caller, dir, &vector_request(vector, k, None, filter))
                .map(|mut found| Found::Vectors(found.pop().unwrap_or_default()))
                .map_err(|e| e.to_string()),
            Query::Range { vector, radius, limit, filter } => self
                .search(caller, dir, &vector_request(vector, limit, Some(radius), filter))
                .map(|mut found| Found::Vectors(found.pop().unwrap_or_default()))
                .map_err(|e| e.to_string()),
        });
        match found {
            Ok(found) => out.results(index, &found),
            Err(message) => out.error(index, &message),
        }
    }

    /// Answers k-NN queries `index..` that share k and filter with one search; false when their
    /// answers no longer fit the budget. A batch the service refuses (a wrong dimension) is
    /// answered query by query, so each line gets its own error.
    fn answer_batch(&self, caller: &Caller, dir: u64, index: usize, queries: &[Query], out: &mut Answers) -> bool {
        let Some(Query::Knn { k, filter, vector }) = queries.first() else { return true };
        let dim = vector.len();
        let mut values = Vec::with_capacity(dim * queries.len());
        for query in queries {
            if let Query::Knn { vector, .. } = query {
                if vector.len() != dim {
                    return queries
                        .iter()
                        .enumerate()
                        .all(|(i, q)| self.answer_one(caller, dir, index + i, Ok(q.clone()), &Interrupt::none(), out));
                }
                values.extend_from_slice(vector);
            }
        }
        let mut request = vector_request(values, *k, None, filter.clone());
        request.dim = dim as u32;
        match self.search(caller, dir, &request) {
            Ok(found) => found.into_iter().enumerate().all(|(i, n)| out.results(index + i, &Found::Vectors(n))),
            Err(error) => (0..queries.len()).all(|i| out.error(index + i, &error.to_string())),
        }
    }
}

fn vector_request(vector: Vec<f32>, k: usize, radius: Option<f32>, filter: Option<String>) -> SearchRequest {
    SearchRequest { dim: vector.len() as u32, queries: vector, k, radius, filter }
}

/// The answers being written, and the bytes they may take.
struct Answers {
    bytes: Vec<u8>,
    budget: usize,
    /// The queries answered so far: the index of the next.
    answered: usize,
}

impl Answers {
    /// Appends query `index`'s answer `line` when it fits the budget.
    fn push(&mut self, index: usize, line: String) -> bool {
        if self.bytes.len() + line.len() > self.budget {
            return false;
        }
        self.bytes.extend_from_slice(line.as_bytes());
        self.answered = index + 1;
        true
    }

    fn results(&mut self, index: usize, found: &Found) -> bool {
        let hits: Vec<String> = match found {
            Found::Vectors(results) => {
                results.iter().map(|n| format!("{{\"id\": {}, \"distance\": {}}}", n.id, n.distance)).collect()
            }
            Found::Text(results) => results
                .iter()
                .map(|h| {
                    let path = Value::String(String::from_utf8_lossy(&h.name).into_owned());
                    let snippet = Value::String(h.snippet.clone());
                    format!(
                        "{{\"id\": {}, \"distance\": {}, \"path\": {path}, \"chunk\": {}, \"snippet\": {snippet}}}",
                        h.id, h.distance, h.chunk
                    )
                })
                .collect(),
        };
        self.push(index, format!("{{\"query\": {index}, \"results\": [{}]}}\n", hits.join(", ")))
    }

    /// An error line for query `index`, when it fits the budget.
    fn error(&mut self, index: usize, message: &str) -> bool {
        self.push(index, error_line(index, message))
    }

    /// The last line, written past the budget: why the queries from the next on did not run.
    fn stop(&mut self, message: &str) {
        self.bytes.extend_from_slice(error_line(self.answered, message).as_bytes());
    }
}

fn error_line(index: usize, message: &str) -> String {
    let message = Value::String(message.to_string());
    format!("{{\"query\": {index}, \"error\": {message}}}\n")
}

enum Found {
    Vectors(Vec<Neighbor>),
    Text(Vec<TextHit>),
}

/// One query of the language.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    Knn { vector: Vec<f32>, k: usize, filter: Option<String> },
    Range { vector: Vec<f32>, radius: f32, limit: usize, filter: Option<String> },
    Text { text: String, k: usize, filter: Option<String> },
}

/// Parses one line of a query file; the error is the message its answer line carries.
pub fn parse_query(line: &str) -> std::result::Result<Query, String> {
    let query: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let object = query.as_object().ok_or("a query is a JSON object")?;
    let filter = match object.get("filter") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => return Err("\"filter\" is a string".to_owned()),
    };
    let count = |key: &str, default: usize, max: usize| -> std::result::Result<usize, String> {
        match object.get(key) {
            None => Ok(default),
            Some(value) => value
                .as_u64()
                .filter(|&n| (1..=max as u64).contains(&n))
                .map(|n| n as usize)
                .ok_or_else(|| format!("\"{key}\" is a whole number in 1..={max}")),
        }
    };
    match (object.get("text"), object.get("vector")) {
        (Some(_), Some(_)) => Err("a query has a \"vector\" or a \"text\", not both".to_owned()),
        (Some(Value::String(text)), None) => {
            if object.contains_key("radius") {
                return Err("a text query is a k-NN search: \"radius\" applies to vectors only".to_owned());
            }
            Ok(Query::Text { text: text.clone(), k: count("k", K_DEFAULT, crate::text::TEXT_K_MAX)?, filter })
        }
        (Some(_), None) => Err("\"text\" is a string".to_owned()),
        (None, vector) => {
            let vector: Vec<f32> = vector
                .and_then(Value::as_array)
                .ok_or("the query has no \"vector\" array (or \"text\" string)")?
                .iter()
                .map(|v| v.as_f64().map(|f| f as f32).ok_or("\"vector\" holds a non-number"))
                .collect::<std::result::Result<_, _>>()?;
            match object.get("radius") {
                None => Ok(Query::Knn { vector, k: count("k", K_DEFAULT, K_MAX)?, filter }),
                Some(radius) => {
                    let radius = radius.as_f64().ok_or("\"radius\" is a number")? as f32;
                    let limit = count("limit", RANGE_LIMIT_DEFAULT, RANGE_LIMIT_MAX)?;
                    Ok(Query::Range { vector, radius, limit, filter })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_with_named_errors() {
        assert_eq!(
            parse_query(r#"{"vector": [1, 2.5], "k": 3, "filter": "a = 1"}"#),
            Ok(Query::Knn { vector: vec![1.0, 2.5], k: 3, filter: Some("a = 1".into()) })
        );
        assert_eq!(
            parse_query(r#"{"vector": [1], "radius": 0.5}"#),
            Ok(Query::Range { vector: vec![1.0], radius: 0.5, limit: RANGE_LIMIT_DEFAULT, filter: None })
        );
        assert_eq!(parse_query(r#"{"text": "hi"}"#), Ok(Query::Text { text: "hi".into(), k: K_DEFAULT, filter: None }));
        let errors = [
            ("[1]", "a query is a JSON object"),
            ("{", "not a JSON object"),
            (r#"{"vector": [1], "k": 0}"#, "\"k\" is a whole number in 1..=10000"),
            (r#"{"vector": [1], "k": 1e30}"#, "\"k\" is a whole number"),
            (r#"{"vector": [1], "k": -1}"#, "\"k\" is a whole number"),
            (r#"{"vector": [1], "radius": 1, "limit": 1000000}"#, "\"limit\" is a whole number in 1..=100000"),
            (r#"{"vector": ["x"]}"#, "non-number"),
            (r#"{"text": "a", "vector": [1]}"#, "not both"),
            (r#"{"text": "a", "radius": 1}"#, "vectors only"),
            (r#"{"k": 1}"#, "no \"vector\""),
            (r#"{"vector": [1], "filter": 3}"#, "\"filter\" is a string"),
        ];
        for (line, want) in errors {
            let message = parse_query(line).unwrap_err();
            assert!(message.contains(want), "{line}: {message}");
        }
    }
}
