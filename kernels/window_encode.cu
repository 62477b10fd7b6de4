/* window_encode.cu: batch encoding on the GPU from the GPU-resident genome. For each batch row, the tile record
 * (contig, start) gives the window of T + 1 bases starting at start + tile_size / 2 - (T + 1) / 2 + shift (contig
 * coordinates; outside the contig is N); token i is the dinucleotide (w[i], w[i + 1]) as 4 a + b, or 16 when
 * either base is N; with rc the window is reverse-complemented after the shift: token i = (comp w[T - i],
 * comp w[T - i - 1]). Only the tile indices (B,) cross the bus per step.
 * Twin: src/data/window.rs (encode_batch_into). Launch: one thread per token (B, T), 1-D grid-stride. */

#define N_CODE 4
#define N_TOKEN 16

__device__ __forceinline__ u8 base_at(const u8* codes, u64 offset, i64 len, i64 pos) {
    return (pos >= 0 && pos < len) ? codes[offset + pos] : N_CODE;
}

__device__ __forceinline__ u8 complement(u8 c) {
    return c < 4 ? 3 - c : N_CODE;
}

/* codes: the concatenated genome; contig_offset, contig_len (n_contigs,); tile_contig, tile_start (n_tiles,);
 * indices (B,) global tile indices (checked on the host); out (B, T). */
extern "C" __global__ void window_encode_u8(const u8* codes, const u64* contig_offset, const u64* contig_len,
                                            const u32* tile_contig, const u32* tile_start, const u64* indices,
                                            i64 batch, i64 t, i64 tile_size, i64 shift, int rc, u8* out) {
    for (i64 idx = global_index(); idx < batch * t; idx += grid_stride()) {
        i64 r = idx / t, i = idx % t;
        u64 g = indices[r];
        u32 contig = tile_contig[g];
        u64 off = contig_offset[contig];
        i64 len = (i64)contig_len[contig];
        i64 start = (i64)tile_start[g] + tile_size / 2 - (t + 1) / 2 + shift;
        u8 a, b;
        if (rc) {
            a = complement(base_at(codes, off, len, start + t - i));
            b = complement(base_at(codes, off, len, start + t - i - 1));
        } else {
            a = base_at(codes, off, len, start + i);
            b = base_at(codes, off, len, start + i + 1);
        }
        out[idx] = (a < 4 && b < 4) ? (u8)(4 * a + b) : (u8)N_TOKEN;
    }
}

/* out (B, row_bytes) = label rows of the batch's tiles from the GPU-resident bitsets (n_tiles, row_bytes). */
extern "C" __global__ void label_gather_u8(const u8* labels, const u64* indices, i64 batch, i64 row_bytes,
                                           u8* out) {
    for (i64 idx = global_index(); idx < batch * row_bytes; idx += grid_stride()) {
        i64 r = idx / row_bytes, j = idx % row_bytes;
        out[idx] = labels[indices[r] * row_bytes + j];
    }
}
