//! Backend trait of primitive ops and its implementations (in progress).
