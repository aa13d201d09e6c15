//! One error type for everything a program can get wrong at run time.

use std::fmt;

/// What went wrong, so the binding can pick the matching JavaScript error class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// An index value outside the axis it addresses.
    Index,
    /// Shapes that do not fit together.
    Shape,
    /// A dtype an op does not accept.
    DType,
    /// A malformed program or buffer list (a bug in the encoder, never the user's).
    Format,
    /// Memory could not be allocated.
    Allocation,
}

impl ErrorKind {
    /// The stable name the binding puts in front of the message.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Index => "IndexError",
            ErrorKind::Shape => "ShapeError",
            ErrorKind::DType => "DTypeError",
            ErrorKind::Format => "FormatError",
            ErrorKind::Allocation => "AllocationError",
        }
    }
}

/// An error naming the op and what was wrong with its operands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelError {
    pub kind: ErrorKind,
    pub message: String,
}

impl KernelError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        KernelError {
            kind,
            message: message.into(),
        }
    }
    pub fn format(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Format, message)
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

impl std::error::Error for KernelError {}

pub type Result<T> = std::result::Result<T, KernelError>;
