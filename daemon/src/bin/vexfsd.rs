//! `vexfsd`: serves a VexFS volume from a block device or image file through a FUSE mount.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use vexfs_daemon::embed::{self, registry, registry::Registry};
use vexfs_daemon::engine::{Engine, EngineOptions, SystemClock, CACHE_BYTES_MIN};
use vexfs_daemon::fuse::mount::{self, MountOptions};
use vexfs_daemon::fuse::ops::FuseDoor;
use vexfs_daemon::fuse::session::{Session, SessionConfig};
use vexfs_daemon::fuse::uring;
use vexfs_daemon::io::{Arena, Device, DeviceOptions, UringStorage};
use vexfs_daemon::service::Collections;
use vexfs_daemon::text::Texts;
use vexfs_daemon::vector::Vectors;

#[derive(Parser, Debug)]
#[command(name = "vexfsd", version, about = "Serve a VexFS volume through a FUSE mount")]
struct Args {
    /// Block device or image file holding the volume (made with `vexfs mkfs`).
    #[arg(long)]
    device: PathBuf,
    /// Directory to mount the file system on.
    #[arg(long)]
    mount: PathBuf,
    /// Memory for the metadata cache, e.g. 256M (at least 16M).
    #[arg(long, default_value = "256M", value_parser = vexfs_format::units::parse_size)]
    cache_size: u64,
    /// FUSE worker threads (default: the number of CPUs, at least 2).
    #[arg(long)]
    threads: Option<usize>,
    /// Commit metadata at least this often, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    commit_interval_ms: u64,
    /// Write through to the daemon on every write() instead of caching in the kernel.
    #[arg(long)]
    no_writeback_cache: bool,
    /// How FUSE requests travel: `uring` (FUSE-over-io_uring, one queue per CPU; needs
    /// `echo Y > /sys/module/fuse/parameters/enable_uring`), `classic` (/dev/fuse), or `auto`
    /// (uring when the kernel has it enabled).
    #[arg(long, value_enum, default_value_t = FuseTransport::Auto)]
    fuse_transport: FuseTransport,
    /// Defines an embedder text collections may use, as NAME=SPEC (repeat for more). SPEC is
    /// `builtin:all-minilm-l6-v2` (in process, no network) or `ollama:http://HOST:PORT:MODEL` (an
    /// Ollama server's embeddings API). Collections name embedders; only these and the builtin
    /// `all-minilm-l6-v2` exist.
    #[arg(long = "embedder", value_name = "NAME=SPEC", value_parser = registry::parse_definition)]
    embedders: Vec<(String, String)>,
    /// The embedder of text collections created without one.
    #[arg(long, default_value = embed::MINILM_NAME)]
    default_embedder: String,
    /// Memory for the rows of vector collections, faulted in at start and kept, e.g. 1G. Rows
    /// beyond it take memory as they arrive. Where first writes to fresh memory are slow (virtual
    /// machines whose host backs guest memory lazily), a reserve lets inserts run at memory speed.
    #[arg(long, default_value = "0", value_parser = vexfs_format::units::parse_size)]
    vector_memory: u64,
    /// Directory of the builtin models, one subdirectory per model (scripts/setup.sh installs
    /// all-MiniLM-L6-v2 there).
    #[arg(long)]
    models_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum FuseTransport {
    Auto,
    Uring,
    Classic,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VEXFS_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args = Args::parse();
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vexfsd: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn serve(args: &Args) -> Result<()> {
    if (args.cache_size as usize) < CACHE_BYTES_MIN {
        anyhow::bail!("--cache-size must be at least {} MiB", CACHE_BYTES_MIN >> 20);
    }
    let models_dir = match &args.models_dir {
        Some(dir) if !dir.is_dir() => {
            anyhow::bail!("--models-dir {}: no such directory", dir.display())
        }
        Some(dir) => dir.clone(),
        None => PathBuf::from(embed::MODELS_DIR_DEFAULT),
    };
    let embedders = Registry::new(&args.embedders, &args.default_embedder, models_dir)
        .map_err(|message| anyhow::anyhow!("--embedder: {message}"))?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()).max(2));
    let uring = match args.fuse_transport {
        FuseTransport::Classic => false,
        FuseTransport::Auto => uring::kernel_enabled(),
        FuseTransport::Uring if uring::kernel_enabled() => true,
        FuseTransport::Uring => anyhow::bail!(
            "--fuse-transport uring: FUSE-over-io_uring is disabled in this kernel \
             (enable it with `echo Y > /sys/module/fuse/parameters/enable_uring`)"
        ),
    };
    // Ring queue threads, and as many hand-off threads as workers.
    let queues = if uring { uring::possible_cpus().unwrap_or(0) + threads } else { 0 };
    let device = Device::open(&args.device, &DeviceOptions::default())?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The arena backs the metadata cache, each serving thread's staging buffers for data I/O, and
    // the block buffers of the vector workers' log writers.
    let arena_bytes = args.cache_size as usize
        + (threads + queues + 2) * (8 << 20)
        + workers * vexfs_daemon::vector::LOG_ARENA_BYTES_PER_WORKER
        + (64 << 20);
    let arena = Arena::new(arena_bytes).context("cannot allocate the I/O buffer arena")?;
    let storage = UringStorage::new(device, arena).context("cannot set up io_uring")?;
    let options = EngineOptions {
        cache_bytes: args.cache_size as usize,
        commit_interval: Duration::from_millis(args.commit_interval_ms.max(1)),
    };
    let engine =
        Engine::open(storage, Arc::new(SystemClock), options).with_context(|| format!("{}", args.device.display()))?;
    let mount_options = MountOptions { fsname: args.device.display().to_string(), ..MountOptions::default() };
    let fd = mount::mount(&args.mount, &mount_options)?;
    let config = SessionConfig {
        threads,
        writeback_cache: !args.no_writeback_cache,
        uring,
        mountpoint: Some(args.mount.clone()),
        ..SessionConfig::default()
    };
    let transport = if uring { "io_uring" } else { "/dev/fuse" };
    tracing::info!(device = %args.device.display(), mount = %args.mount.display(), threads, transport, "serving");
    let signals = watch_signals(&args.mount)?;
    vexfs_daemon::io::rows::reserve(args.vector_memory as usize)
        .with_context(|| format!("cannot reserve --vector-memory {}", args.vector_memory))?;
    let vectors = Arc::new(Vectors::new(engine.handle(), workers));
    let texts = Arc::new(Texts::new(Arc::clone(&vectors), Arc::new(embedders)));
    let service = Arc::new(Collections::new(Arc::clone(&texts)));
    let door = Arc::new(FuseDoor::new(engine.handle(), Arc::clone(&service)));
    let served = Session::run(fd, door, config);
    signals.close();
    texts.stop();
    drop(service);
    drop(texts);
    drop(vectors);
    let closed = engine.close();
    served.context("FUSE session failed")?;
    closed.context("flushing the volume at unmount failed")?;
    tracing::info!("unmounted cleanly");
    Ok(())
}

/// On SIGTERM or SIGINT, unmounts; the session then ends and the volume is closed cleanly.
fn watch_signals(mountpoint: &Path) -> Result<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
    let handle = signals.handle();
    let mountpoint = mountpoint.to_path_buf();
    std::thread::Builder::new().name("vexfs-signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::info!(signal, "unmounting");
            if let Err(error) = mount::unmount(&mountpoint) {
                tracing::error!(%error, "unmount failed");
            }
        }
    })?;
    Ok(handle)
}
