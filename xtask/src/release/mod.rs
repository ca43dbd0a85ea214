//! What a release is: the image declared in Cargo metadata, its names in
//! each registry, the git state and the tags, and the lock that keeps two
//! runs from releasing one image at once.

pub mod git;
pub mod labels;
pub mod lock;
pub mod reference;
pub mod tags;
