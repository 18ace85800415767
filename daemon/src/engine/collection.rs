//! Collections in the namespace: a directory that carries a `(dir, Collection, 0)` item, and the
//! hidden shard-log inodes that item names. The vectors themselves are the shard logs' contents,
//! written and read like any file's data; [`crate::vector`] keeps them in memory and appends to
//! the logs.

use vexfs_format::collection::{decode_collection, encode_collection, CollectionRecord};
use vexfs_format::inode::{file_type, InodeRecord, INODE_FLAG_ORPHAN, INODE_FLAG_SHARD};
use vexfs_format::key::{ItemKind, Key, ORPHAN_OBJECT};
use vexfs_format::superblock::FORMAT_VERSION_COLLECTIONS;

use super::error::{EngineError, Result};
use super::items as it;
use super::meta::Tx;
use super::EngineHandle;
use crate::storage::Storage;

fn collection_key(dir: u64) -> Key {
    Key::new(dir, ItemKind::Collection, 0)
}

/// The collection record of `dir`, if it is a collection.
pub(super) fn get<S: Storage>(tx: &mut Tx<'_, S>, dir: u64) -> Result<Option<CollectionRecord>> {
    let Some(value) = it::get(tx, collection_key(dir))? else {
        return Ok(None);
    };
    // Item values carry no block address; the error names the directory instead.
    let record = decode_collection(&value, 0)
        .map_err(|e| EngineError::Volume(format!("collection record of directory {dir}: {e}")))?;
    Ok(Some(record))
}

/// Removes `dir`'s collection item, if any, and puts its shard logs on the orphan list. Returns
/// the shard inodes, to be freed once the transaction is done.
pub(super) fn remove<S: Storage>(tx: &mut Tx<'_, S>, dir: u64) -> Result<Vec<u64>> {
    let Some(record) = get(tx, dir)? else {
        return Ok(Vec::new());
    };
    it::del(tx, collection_key(dir))?;
    for &shard in &record.shards {
        let mut inode = it::get_inode(tx, shard)?;
        inode.nlink = 0;
        inode.flags |= INODE_FLAG_ORPHAN;
        it::put_inode(tx, shard, &inode)?;
        it::put(tx, Key::new(ORPHAN_OBJECT, ItemKind::Orphan, shard), &[])?;
    }
    Ok(record.shards)
}

impl<S: Storage> EngineHandle<S> {
    /// Makes the empty directory `dir` a collection with `shard_count` shard logs. `make` builds
    /// the record from the new shard inodes (the caller has validated everything else).
    pub fn collection_create(
        &self,
        dir: u64,
        shard_count: usize,
        make: impl Fn(Vec<u64>) -> CollectionRecord,
    ) -> Result<CollectionRecord> {
        let version = self.shared.journal.lock().superblock.format_version;
        if version < FORMAT_VERSION_COLLECTIONS {
            return Err(EngineError::Volume(format!(
                "the volume has format version {version}; collections need version {FORMAT_VERSION_COLLECTIONS} \
                 (a volume made by a newer `vexfs mkfs`)"
            )));
        }
        let now = self.shared.now();
        self.shared.run_retrying(|tx| {
            let mut record = it::get_inode(tx, dir)?;
            if !record.is_dir() {
                return Err(EngineError::NotDir);
            }
            if record.nlink == 0 {
                return Err(EngineError::NotFound);
            }
            if get(tx, dir)?.is_some() {
                return Err(EngineError::Exists);
            }
            if !it::dir_is_empty(tx, dir)? {
                return Err(EngineError::NotEmpty);
            }
            let mut shards = Vec::with_capacity(shard_count);
            for _ in 0..shard_count {
                let (ino, generation) = it::new_ino(tx)?;
                let shard = InodeRecord {
                    mode: file_type::REGULAR | 0o600,
                    flags: INODE_FLAG_SHARD,
                    nlink: 1,
                    atime: now,
                    mtime: now,
                    ctime: now,
                    crtime: now,
                    generation,
                    ..InodeRecord::default()
                };
                it::put_inode(tx, ino, &shard)?;
                shards.push(ino);
            }
            let collection = make(shards);
            it::put(tx, collection_key(dir), &encode_collection(&collection))?;
            record.ctime = now;
            it::put_inode(tx, dir, &record)?;
            Ok(collection)
        })
    }

    /// The collection record of `dir`; None when `dir` is not a collection.
    pub fn collection(&self, dir: u64) -> Result<Option<CollectionRecord>> {
        self.shared.look(|tx| {
            it::get_inode(tx, dir)?;
            get(tx, dir)
        })
    }

    /// The size of a shard log (or any regular file) in bytes.
    pub fn file_size(&self, ino: u64) -> Result<u64> {
        Ok(self.getattr(ino)?.record.size)
    }
}
