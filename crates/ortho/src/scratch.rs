//! Scratch plans: a call's scratch buffers as one named struct of float counts, from which the call
//! both checks the device's limits (and reports its memory) and allocates.

use crate::pool::PooledBuffer;
use crate::recording::Recording;

/// Floats of one scratch buffer (`usize`), of a fixed number of them (`[usize; N]`), of an optional
/// set, or of a named set declared with [`scratch_plan!`].
pub(crate) trait ScratchSize {
    type Buffers;

    /// Calls `each` with the float count of every buffer.
    fn each_floats(&self, each: &mut dyn FnMut(usize));

    /// Allocates the buffers (callers go through [`Recording::allocate`], which checks the limits).
    fn allocate(&self, gpu: &Recording) -> Self::Buffers;

    fn largest_bytes(&self) -> u64 {
        let mut largest = 0;
        self.each_floats(&mut |n| largest = largest.max(4 * n as u64));
        largest
    }

    fn total_bytes(&self) -> u64 {
        let mut total = 0;
        self.each_floats(&mut |n| total += 4 * n as u64);
        total
    }
}

impl ScratchSize for usize {
    type Buffers = PooledBuffer;

    fn each_floats(&self, each: &mut dyn FnMut(usize)) {
        each(*self)
    }

    fn allocate(&self, gpu: &Recording) -> PooledBuffer {
        gpu.scratch(4 * *self as u64)
    }
}

impl<const N: usize> ScratchSize for [usize; N] {
    type Buffers = [PooledBuffer; N];

    fn each_floats(&self, each: &mut dyn FnMut(usize)) {
        self.iter().for_each(|&n| each(n))
    }

    fn allocate(&self, gpu: &Recording) -> Self::Buffers {
        self.map(|n| gpu.scratch(4 * n as u64))
    }
}

impl<T: ScratchSize> ScratchSize for Option<T> {
    type Buffers = Option<T::Buffers>;

    fn each_floats(&self, each: &mut dyn FnMut(usize)) {
        if let Some(t) = self {
            t.each_floats(each)
        }
    }

    fn allocate(&self, gpu: &Recording) -> Self::Buffers {
        self.as_ref().map(|t| t.allocate(gpu))
    }
}

/// Declares a struct of float counts and the struct of buffers allocated from it, field for field.
macro_rules! scratch_plan {
    ($(#[doc = $doc:literal])* $vis:vis struct $sizes:ident => $buffers:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $sizes { $(pub $field: $ty),* }

        #[doc = concat!("The buffers of [`", stringify!($sizes), "`].")]
        $vis struct $buffers { $(pub $field: <$ty as $crate::scratch::ScratchSize>::Buffers),* }

        impl $crate::scratch::ScratchSize for $sizes {
            type Buffers = $buffers;

            fn each_floats(&self, each: &mut dyn FnMut(usize)) {
                $($crate::scratch::ScratchSize::each_floats(&self.$field, each);)*
            }

            fn allocate(&self, gpu: &$crate::recording::Recording) -> $buffers {
                $buffers { $($field: $crate::scratch::ScratchSize::allocate(&self.$field, gpu)),* }
            }
        }
    };
}
pub(crate) use scratch_plan;
