//! Text collections on a real mount: documents written into a collection directory are chunked,
//! embedded by the builtin all-MiniLM-L6-v2 and found by meaning.
//!
//! Goal: a question phrased differently from every document finds the one document on its
//! subject first; `vexfs sync` and `fsync` wait until documents are searchable; rewriting a
//! document replaces its vectors and removing it removes them; a document's `user.*` xattrs
//! filter searches; a file that is not UTF-8 is stored unchanged and skipped; what was fsync'ed
//! survives `kill -9`; a missing model or an unreachable embedding server is a clear error.
//!
//! Method: eight short documents on distinct subjects, one of them two chunks long, and one
//! paraphrased question per subject. The questions share few content words with their documents,
//! so lexical matching alone would not rank them. Needs the model that scripts/setup.sh installs
//! (the test fails without it, as setup is part of the test command). Without root or
//! `/dev/fuse` it prints SKIP.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use vexfs_tests::{
    args, fvecs_bytes, require_root_and_fuse, sys, vexfs_fails, vexfs_ok, Mount, MountOptions, TestVolume, MIB,
};

/// Documents on distinct subjects, and a question about each that paraphrases it.
const SUBJECTS: [(&str, &str, &str); 7] = [
    (
        "keys.md",
        "Rotating the release signing keys. Every quarter the release team generates a new GPG \
         key pair on the offline hardware token, publishes the new public key to the keyserver, \
         signs it with the old key, and revokes the old key once the transition period is over. \
         Remember to update the fingerprint stored in the CI secrets.",
        "how do we replace the cryptographic credential used to sign our software versions?",
    ),
    (
        "sourdough.md",
        "Baking sourdough bread. Feed the starter the night before, mix flour, water and salt, \
         let the dough rise for several hours with stretch and folds, shape the loaf, proof it in \
         the fridge overnight and bake it in a very hot dutch oven.",
        "what are the steps to make a loaf leavened with a wild yeast culture?",
    ),
    (
        "bicycle.md",
        "Fixing a flat bicycle tire. Take the wheel off, pry the tire from the rim with tire \
         levers, find the hole in the inner tube, patch it or fit a new tube, check the inside of \
         the tire for thorns, and pump it back up to the pressure printed on the sidewall.",
        "my bike got a puncture on the way to work, how do I mend it?",
    ),
    (
        "tomatoes.md",
        "Growing tomatoes in the garden. Plant the seedlings after the last frost in a sunny \
         spot, water deeply at the base, stake or cage the vines, pinch off the suckers and feed \
         with compost. Harvest when the fruit is fully red.",
        "advice for raising tomato plants outdoors in my backyard vegetable patch",
    ),
    (
        "restore.md",
        "Restoring the database from backup. Stop the application servers, download the latest \
         nightly snapshot from object storage, verify its checksum, load it with pg_restore into a \
         fresh database, then point the services at it and start them again.",
        "our postgres data got corrupted: how do we bring back yesterday's copy?",
    ),
    (
        "marathon.md",
        "Training for a marathon. Build up weekly mileage gradually, include one long run every \
         week, add interval sessions for speed, taper for two weeks before race day, and practise \
         taking energy gels during the long runs.",
        "how should I prepare my body to run 42 kilometres?",
    ),
    (
        "cats.md",
        "Caring for a kitten. Keep the litter box clean, feed small meals of kitten food several \
         times a day, take it to the vet for vaccinations at eight and twelve weeks, and give it \
         scratching posts and toys so it leaves the furniture alone.",
        "what does a young cat need in its first months at home?",
    ),
];

/// A two-chunk document: each section is one chunk at the default chunk size (1000 bytes).
const OFFICE_NAME: &str = "office.md";
const OFFICE_QUESTION: &str = "how can I reserve a conference space for a team meeting?";

fn office_document() -> String {
    let coffee = "Cleaning the coffee machine. Empty the drip tray and the grounds container \
                  every evening. Once a week run the descaling program with the citric acid \
                  tablets from the kitchen cupboard, rinse the water tank, and wipe the steam \
                  wand with a damp cloth after each use so the milk does not dry on it. ";
    let rooms = "Booking meeting rooms. Rooms are booked in the shared calendar: add the room as \
                 a guest to your invitation and it accepts automatically when free. Large rooms \
                 on the fourth floor need a reservation two days ahead, and the video equipment \
                 must be requested from the front desk. Release rooms you no longer need. ";
    format!("{}\n\n{}\n", coffee.repeat(2).trim_end(), rooms.repeat(2).trim_end())
}

/// One result of `vexfs search DIR TEXT --json`.
#[derive(Debug)]
struct Found {
    path: PathBuf,
    chunk: u64,
    distance: f64,
    snippet: String,
}

fn search(coll: &Path, text: &str, k: usize, filter: Option<&str>) -> Vec<Found> {
    let mut command = args!["search", coll, text, "-k", &k.to_string(), "--json"].to_vec();
    if let Some(filter) = filter {
        command.extend(args!["--filter", filter]);
    }
    let stdout = vexfs_ok(&command);
    assert_eq!(stdout.lines().count(), 1, "one line per query: {stdout}");
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(value["query"], 0, "{stdout}");
    let found: Vec<Found> = value["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results array: {stdout}"))
        .iter()
        .map(|hit| {
            assert!(hit["id"].is_u64(), "{stdout}");
            Found {
                path: PathBuf::from(hit["path"].as_str().expect("a path")),
                chunk: hit["chunk"].as_u64().expect("a chunk"),
                distance: hit["distance"].as_f64().expect("a distance"),
                snippet: hit["snippet"].as_str().expect("a snippet").to_owned(),
            }
        })
        .collect();
    assert!(found.windows(2).all(|w| w[0].distance <= w[1].distance), "not nearest first: {found:?}");
    found
}

fn stats(coll: &Path) -> serde_json::Value {
    let stdout = vexfs_ok(&args!["stats", coll, "--json"]);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn fold_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Writes `text` to `path` and fsyncs it: on return it is durable and searchable.
fn write_synced(path: &Path, text: &[u8]) {
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(path).expect("open");
    file.write_all(text).expect("write");
    file.sync_all().expect("fsync");
}

/// Each subject's question finds its own document first.
fn assert_subjects_found(coll: &Path, when: &str) {
    for (name, text, question) in SUBJECTS {
        let found = search(coll, question, 3, None);
        assert!(!found.is_empty(), "{when}: no results for {question:?}");
        assert_eq!(found[0].path, coll.join(name), "{when}: {question:?} found {found:#?}");
        assert_eq!(found[0].chunk, 0, "{when}: {found:?}");
        assert!(fold_whitespace(text).starts_with(&found[0].snippet), "{when}: snippet {:?}", found[0].snippet);
        assert!(found[0].distance >= 0.0 && found[0].distance < 1.0, "{when}: cosine distance {found:?}");
    }
}

#[test]
fn documents_are_found_by_paraphrased_questions() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = TestVolume::create(256 * MIB).expect("creating a test volume");
    // An embedder the administrator defined, on a port where nothing listens.
    let unreachable_embedder = "remote=ollama:http://127.0.0.1:9:m";
    let options =
        MountOptions { extra_args: vec!["--embedder".into(), unreachable_embedder.into()], ..Default::default() };
    let mount = Mount::start(&volume, &options).expect("mounting");
    let coll = mount.path().join("notes");

    let created = vexfs_ok(&args!["collection", "create", &coll, "--embed"]);
    assert!(created.contains("text collection") && created.contains("dimension 384"), "{created}");
    assert_eq!(sys::getxattr(&coll, "user.vexfs.embedder").expect("xattr"), b"all-minilm-l6-v2");
    assert_eq!(sys::getxattr(&coll, "user.vexfs.metric").expect("xattr"), b"cosine");

    // Written as `cp` does: no fsync. `vexfs sync` then waits until all of it is searchable.
    for (name, text, _) in SUBJECTS {
        fs::write(coll.join(name), text).expect("writing a document");
    }
    fs::write(coll.join(OFFICE_NAME), office_document()).expect("writing a document");
    let binary: Vec<u8> = (0..=255u8).rev().cycle().take(3000).collect();
    fs::write(coll.join("photo.raw"), &binary).expect("writing a binary file");
    vexfs_ok(&args!["sync", &coll]);

    let s = stats(&coll);
    assert_eq!(s["docs_queued"], 0, "{s}");
    assert_eq!(s["docs_indexed"], SUBJECTS.len() as u64 + 1, "{s}");
    assert_eq!(s["docs_skipped"], 1, "the binary file: {s}");
    assert_eq!(s["chunks"], SUBJECTS.len() as u64 + 2, "one chunk per subject, two for the office: {s}");
    assert_eq!(fs::read(coll.join("photo.raw")).expect("reading back"), binary, "a skipped file is stored as written");
    assert!(mount.log().contains("not UTF-8"), "the skip is logged with its reason:\n{}", mount.log());

    assert_subjects_found(&coll, "after sync");
    let office = search(&coll, OFFICE_QUESTION, 2, None);
    assert_eq!((office[0].path.clone(), office[0].chunk), (coll.join(OFFICE_NAME), 1), "{office:#?}");
    assert!(office[0].snippet.contains("Booking meeting rooms"), "{office:?}");

    // People's output: rank, score, path and chunk, then the snippet.
    let human = vexfs_ok(&args!["search", &coll, SUBJECTS[1].2, "-k", "2"]);
    let first = human.lines().next().unwrap_or_default();
    assert!(first.starts_with(" 1. score 0.") && first.contains("/notes/sourdough.md  chunk 0"), "{human}");
    assert!(human.lines().nth(1).unwrap_or_default().starts_with("    Baking sourdough bread."), "{human}");

    // The query files take text too.
    let query = coll.join(".vexfs-query/q");
    fs::write(&query, format!("{{\"text\": \"{}\", \"k\": 1}}\n", SUBJECTS[2].2)).expect("writing a query");
    let answer = fs::read_to_string(&query).expect("reading the answer");
    let answer: serde_json::Value = serde_json::from_str(answer.trim()).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(answer["results"][0]["path"], "bicycle.md", "{answer}");
    assert_eq!(answer["results"][0]["chunk"], 0, "{answer}");

    // A document's user.* xattrs are its chunks' attributes.
    sys::setxattr(&coll.join("cats.md"), "user.topic", b"pets", 0).expect("setxattr");
    sys::setxattr(&coll.join("marathon.md"), "user.year", b"2024", 0).expect("setxattr");
    vexfs_ok(&args!["sync", &coll]);
    let pets = search(&coll, SUBJECTS[0].2, 5, Some("topic = \"pets\""));
    assert_eq!(pets.iter().map(|f| f.path.clone()).collect::<Vec<_>>(), [coll.join("cats.md")], "{pets:?}");
    let recent = search(&coll, "anything at all", 5, Some("year >= 2020"));
    assert_eq!(recent.len(), 1, "{recent:?}");
    assert_eq!(recent[0].path, coll.join("marathon.md"));

    // Rewriting a document replaces its vectors; fsync returns once the new text is searchable.
    write_synced(
        &coll.join("keys.md"),
        b"Watering houseplants. Most indoor plants want water when the top of the soil is dry; \
          succulents far less often. Use pots with drainage holes and empty the saucer.",
    );
    let old = search(&coll, SUBJECTS[0].2, 3, None);
    assert!(old.iter().all(|f| f.snippet.contains("Watering") || f.path != coll.join("keys.md")), "{old:?}");
    let new = search(&coll, "how often should I give my potted indoor greenery water?", 1, None);
    assert_eq!(new[0].path, coll.join("keys.md"), "{new:?}");
    assert!(new[0].snippet.starts_with("Watering houseplants."), "{new:?}");

    // Removing a document removes its vectors; renaming keeps it findable under its new name.
    fs::remove_file(coll.join("restore.md")).expect("rm");
    fs::rename(coll.join("tomatoes.md"), coll.join("garden.md")).expect("mv");
    vexfs_ok(&args!["sync", &coll]);
    let gone = search(&coll, SUBJECTS[4].2, 10, None);
    assert!(gone.iter().all(|f| f.path != coll.join("restore.md")), "{gone:?}");
    let moved = search(&coll, SUBJECTS[3].2, 1, None);
    assert_eq!(moved[0].path, coll.join("garden.md"), "{moved:?}");
    let s = stats(&coll);
    assert_eq!((s["docs_indexed"].as_u64(), s["chunks"].as_u64()), (Some(7), Some(8)), "{s}");

    // Raw vectors cannot be put into a text collection, nor a text searched in a raw one.
    let raw = mount.path().join("raw");
    vexfs_ok(&args!["collection", "create", &raw, "--dim", "4", "--metric", "l2"]);
    vexfs_fails(&args!["search", &raw, "bread", "-k", "1"], "search", &["refused"]);
    vexfs_fails(&args!["search", &coll, "bread", "-k", "33"], "search", &["k = 33"]);
    let vectors = volume.dir().join("v.fvecs");
    fs::write(&vectors, fvecs_bytes(384, &[0.5; 384])).expect("writing vectors");
    vexfs_fails(&args!["insert", &coll, &vectors], "insert", &["refused"]);

    // An embedding server that does not answer fails the create, and nothing is left behind.
    let unreachable = mount.path().join("remote");
    vexfs_fails(
        &args!["collection", "create", &unreachable, "--embed", "--embedder", "remote"],
        "collection create",
        &["does not answer"],
    );
    assert!(!unreachable.exists(), "a failed create leaves no directory");
    // A request names embedders; it never gives a spec: anything not defined is refused.
    for name in ["gpt4", "ollama:http://127.0.0.1:9:m"] {
        vexfs_fails(
            &args!["collection", "create", &unreachable, "--embed", "--embedder", name],
            "collection create",
            &["refused"],
        );
        assert!(!unreachable.exists(), "a refused create leaves no directory");
    }

    // Across a remount the index is read back, not rebuilt.
    mount.unmount().expect("unmounting");
    let mount = Mount::start(&volume, &MountOptions::default()).expect("remounting");
    let coll = mount.path().join("notes");
    let s = stats(&coll);
    assert_eq!((s["docs_indexed"].as_u64(), s["chunks"].as_u64()), (Some(7), Some(8)), "{s}");
    let found = search(&coll, SUBJECTS[5].2, 1, None);
    assert_eq!(found[0].path, coll.join("marathon.md"), "{found:?}");
    mount.unmount().expect("unmounting");
}

#[test]
fn fsynced_documents_survive_kill_and_unindexed_ones_are_caught_up() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = TestVolume::create(256 * MIB).expect("creating a test volume");
    let mount = Mount::start(&volume, &MountOptions::default()).expect("mounting");
    let coll = mount.path().join("notes");
    vexfs_ok(&args!["collection", "create", &coll, "--embed"]);
    let (name, text, question) = SUBJECTS[1];
    write_synced(&coll.join(name), text.as_bytes());
    // Searchable the moment fsync returned: no sync, no wait.
    assert_eq!(search(&coll, question, 1, None)[0].path, coll.join(name));
    mount.kill9().expect("kill -9");

    let mount = Mount::start(&volume, &MountOptions::default()).expect("remounting after kill -9");
    let coll = mount.path().join("notes");
    assert_eq!(search(&coll, question, 1, None)[0].path, coll.join(name), "after kill -9");
    mount.unmount().expect("unmounting");

    // Without the model, documents are stored (fsync succeeds) but cannot be indexed, and a
    // text collection cannot be created.
    let empty = volume.dir().join("no-models");
    fs::create_dir_all(&empty).expect("mkdir");
    let options =
        MountOptions { extra_args: vec!["--models-dir".into(), empty.display().to_string()], ..Default::default() };
    let mount = Mount::start(&volume, &options).expect("mounting without models");
    let coll = mount.path().join("notes");
    let (late_name, late_text, late_question) = SUBJECTS[2];
    write_synced(&coll.join(late_name), late_text.as_bytes());
    let s = stats(&coll);
    assert_eq!((s["docs_indexed"].as_u64(), s["docs_skipped"].as_u64()), (Some(1), Some(1)), "{s}");
    vexfs_fails(&args!["search", &coll, late_question], "search", &["could not load the embedding model"]);
    vexfs_fails(
        &args!["collection", "create", mount.path().join("other"), "--embed"],
        "collection create",
        &["could not load the embedding model", "scripts/setup.sh"],
    );
    assert!(mount.log().contains("all-minilm-l6-v2"), "the log names the model path:\n{}", mount.log());
    mount.kill9().expect("kill -9");

    // With the model back, the document that was never indexed is caught up when the collection
    // is opened.
    let mount = Mount::start(&volume, &MountOptions::default()).expect("remounting with models");
    let coll = mount.path().join("notes");
    vexfs_ok(&args!["sync", &coll]);
    assert_eq!(search(&coll, late_question, 1, None)[0].path, coll.join(late_name), "caught up");
    let s = stats(&coll);
    assert_eq!((s["docs_indexed"].as_u64(), s["docs_skipped"].as_u64()), (Some(2), Some(0)), "{s}");
    mount.unmount().expect("unmounting");
}

#[test]
fn a_models_dir_that_does_not_exist_is_refused_at_start() {
    if !require_root_and_fuse() {
        return;
    }
    let volume = TestVolume::create(64 * MIB).expect("creating a test volume");
    let options =
        MountOptions { extra_args: vec!["--models-dir".into(), "/nonexistent/models".into()], ..Default::default() };
    let error = Mount::start(&volume, &options).err().expect("vexfsd must refuse to start");
    let message = format!("{error:#}");
    assert!(message.contains("--models-dir /nonexistent/models: no such directory"), "{message}");
}

/// A stand-in for an Ollama server: answers `POST /api/embed` with a bag-of-words vector per
/// text (each lowercase word hashed into one of [`FAKE_DIM`] counts), so that texts sharing words
/// are near. Serves until the process ends.
fn fake_ollama() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a local port");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer_embed(stream);
        }
    });
    port
}

const FAKE_DIM: usize = 64;

fn bag_of_words(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0f32; FAKE_DIM];
    vector[FAKE_DIM - 1] = 0.01;
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let hash = word
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        vector[(hash % (FAKE_DIM as u64 - 1)) as usize] += 1.0;
    }
    vector
}

fn answer_embed(mut stream: std::net::TcpStream) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Read};
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let (status, reply) = if request_line.starts_with("POST /api/embed ") {
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let texts: Vec<&str> =
            request["input"].as_array().map(|a| a.iter().filter_map(|t| t.as_str()).collect()).unwrap_or_default();
        let embeddings: Vec<Vec<f32>> = texts.iter().map(|t| bag_of_words(t)).collect();
        ("200 OK", serde_json::json!({ "model": request["model"], "embeddings": embeddings }).to_string())
    } else {
        ("404 Not Found", "{\"error\": \"not found\"}".to_owned())
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    )
}

#[test]
fn an_ollama_embedder_serves_a_text_collection() {
    if !require_root_and_fuse() {
        return;
    }
    let port = fake_ollama();
    let definition = format!("bow=ollama:http://127.0.0.1:{port}:bag-of-words");
    let volume = TestVolume::create(64 * MIB).expect("creating a test volume");
    // The daemon's default embedder for text collections created without one.
    let options = MountOptions {
        extra_args: vec!["--embedder".into(), definition, "--default-embedder".into(), "bow".into()],
        ..Default::default()
    };
    let mount = Mount::start(&volume, &options).expect("mounting");
    let coll = mount.path().join("remote");
    let created = vexfs_ok(&args!["collection", "create", &coll, "--embed"]);
    assert!(created.contains(&format!("dimension {FAKE_DIM}")), "{created}");
    assert_eq!(sys::getxattr(&coll, "user.vexfs.embedder").expect("xattr"), b"bow");
    fs::write(coll.join("fruit.txt"), "apple banana cherry and other fruit").expect("write");
    fs::write(coll.join("rocket.txt"), "rocket engine fuel and the launch pad").expect("write");
    vexfs_ok(&args!["sync", &coll]);
    assert_eq!(stats(&coll)["docs_indexed"], 2);
    let found = search(&coll, "banana smoothie", 2, None);
    assert_eq!(found[0].path, coll.join("fruit.txt"), "{found:?}");
    let found = search(&coll, "engine launch", 1, None);
    assert_eq!(found[0].path, coll.join("rocket.txt"), "{found:?}");
    mount.unmount().expect("unmounting");
}

/// A stand-in for an Ollama server that answers the dimension probe (its first request) and then
/// holds every later request without answering, until the process ends.
fn stalled_ollama() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a local port");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (index, stream) in listener.incoming().flatten().enumerate() {
            if index == 0 {
                let _ = answer_embed(stream);
            } else {
                held.push(stream);
            }
        }
    });
    port
}

/// Goal: an embedder that stops answering delays its own collection only: another text
/// collection is indexed and synced meanwhile, files and stats answer, an fsync waiting for the
/// stuck document gives up when its caller is interrupted, and the daemon still unmounts.
#[test]
fn a_stalled_embedder_stalls_only_its_own_collection() {
    if !require_root_and_fuse() {
        return;
    }
    let port = stalled_ollama();
    let volume = TestVolume::create(128 * MIB).expect("creating a test volume");
    let definition = format!("stalled=ollama:http://127.0.0.1:{port}:m");
    let options = MountOptions { extra_args: vec!["--embedder".into(), definition], ..Default::default() };
    let mount = Mount::start(&volume, &options).expect("mounting");
    let stuck = mount.path().join("stuck");
    vexfs_ok(&args!["collection", "create", &stuck, "--embed", "--embedder", "stalled"]);
    fs::write(stuck.join("waits.txt"), "this document waits for an embedder that never answers").expect("write");
    let notes = mount.path().join("notes");
    vexfs_ok(&args!["collection", "create", &notes, "--embed"]);
    let started = std::time::Instant::now();
    fs::write(notes.join(SUBJECTS[1].0), SUBJECTS[1].1).expect("write");
    vexfs_ok(&args!["sync", &notes]);
    assert_eq!(search(&notes, SUBJECTS[1].2, 1, None)[0].path, notes.join(SUBJECTS[1].0));
    write_synced(&mount.path().join("plain.txt"), b"an ordinary file");
    let queued = stats(&stuck)["docs_queued"].as_u64();
    assert!(queued.is_some_and(|n| n >= 1), "the stuck document waits: {queued:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());

    // fsync of the stuck document waits; a signal to the caller ends the wait.
    let vexfs = vexfs_tests::binaries().expect("binaries").vexfs.clone();
    let mut waiting =
        std::process::Command::new(vexfs).arg("sync").arg(stuck.join("waits.txt")).spawn().expect("spawn");
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(waiting.try_wait().expect("try_wait").is_none(), "the fsync returned before the document was indexed");
    sys::kill(waiting.id(), libc::SIGINT).expect("signalling the waiting fsync");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while waiting.try_wait().expect("try_wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "the interrupted fsync still waits");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let unmounting = std::time::Instant::now();
    mount.unmount().expect("unmounting with an embedder that does not answer");
    assert!(unmounting.elapsed() < std::time::Duration::from_secs(30), "unmount took {:?}", unmounting.elapsed());
}
