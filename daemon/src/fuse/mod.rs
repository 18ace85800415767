//! FUSE front door (in progress).
