//! POSIX permission decisions for collections, made from an inode's mode, owner and group as the
//! kernel makes them for files (`generic_permission` without ACLs: the mount does not enable POSIX
//! ACLs, so the mode bits are the whole rule).
//!
//! The caller's class is chosen first and only its bits count: the owner gets the owner bits even
//! when "other" would grant more. Root may read and write anything, and execute anything that has
//! an execute bit somewhere or is a directory.

use vexfs_format::inode::{file_type, InodeRecord};

use super::caller::Caller;

/// Read permission (the `r` bit of a class).
pub const READ: u32 = 4;
/// Write permission.
pub const WRITE: u32 = 2;
/// Execute permission; for a directory, search (lookup of its names).
pub const EXEC: u32 = 1;

/// What a permission decision reads of an inode: its owner, group and mode (type bits included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl From<&InodeRecord> for Owner {
    fn from(record: &InodeRecord) -> Owner {
        Owner { uid: record.uid, gid: record.gid, mode: record.mode }
    }
}

/// Whether `caller` has every permission in `mask` (a set of [`READ`], [`WRITE`], [`EXEC`]) on
/// an inode owned so.
pub fn permits(caller: &Caller, owner: Owner, mask: u32) -> bool {
    if caller.is_root() {
        let is_dir = owner.mode & file_type::MASK == file_type::DIRECTORY;
        return mask & EXEC == 0 || owner.mode & 0o111 != 0 || is_dir;
    }
    let bits = if caller.uid == owner.uid {
        owner.mode >> 6
    } else if caller.in_group(owner.gid) {
        owner.mode >> 3
    } else {
        owner.mode
    } & 0o7;
    bits & mask == mask
}

/// Whether `caller` owns the inode (or is root, who may act as any owner).
pub fn owns(caller: &Caller, owner: Owner) -> bool {
    caller.is_root() || caller.uid == owner.uid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inode(mode: u32, uid: u32, gid: u32) -> Owner {
        Owner { mode, uid, gid }
    }

    #[test]
    fn the_class_decides() {
        let file = inode(file_type::REGULAR | 0o604, 10, 20);
        let owner = Caller::with_groups(10, 99, vec![]);
        let member = Caller::with_groups(11, 99, vec![20]);
        let other = Caller::with_groups(12, 99, vec![]);
        assert!(permits(&owner, file, READ | WRITE));
        assert!(!permits(&member, file, READ), "group bits are 0 even though other has r");
        assert!(permits(&other, file, READ));
        assert!(!permits(&other, file, WRITE));
        let primary = Caller::with_groups(11, 20, vec![]);
        assert!(!permits(&primary, file, READ), "the primary group is a group too");
    }

    #[test]
    fn the_owner_gets_owner_bits_only() {
        let file = inode(file_type::REGULAR | 0o077, 10, 20);
        assert!(!permits(&Caller::with_groups(10, 20, vec![]), file, READ));
    }

    #[test]
    fn root() {
        let root = Caller::root();
        let secret = inode(file_type::REGULAR, 10, 20);
        assert!(permits(&root, secret, READ | WRITE));
        assert!(!permits(&root, secret, EXEC), "no execute bit anywhere");
        assert!(permits(&root, inode(file_type::REGULAR | 0o001, 10, 20), EXEC));
        assert!(permits(&root, inode(file_type::DIRECTORY, 10, 20), EXEC));
        assert!(owns(&root, secret));
        assert!(owns(&Caller::with_groups(10, 0, vec![]), secret));
        assert!(!owns(&Caller::with_groups(11, 20, vec![]), secret));
    }
}
