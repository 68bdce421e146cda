"""Event-driven 2-D convolution, channels-last.

x (H, W, Cin), w (kh, kw, Cin/groups, Cout), b (Cout,), out (Ho, Wo, Cout). Zero padding.
The scatter kernel visits only non-zero inputs and adds their weight rows w[ky, kx, ci, group's Cout]
(contiguous) into every output they reach. Above a density threshold a dense path is faster; both
paths return the same counts because the counts come from the input and the geometry alone.
"""
from __future__ import annotations

import threading

import numpy as np
from numba import njit, prange

from .counts import Counts
from .matmul import matmul
from .threads import get_threads, serial_and_parallel

# Fraction of non-zero inputs above which the dense path is taken, per layer kind. Depthwise: always
# dense (the dense loop does 9 vectorised MACs per input for the price of the event path's scan).
# 2026-11, after the event path began summing 8 weight rows per pass and blocking weights for L2 and the
# dense path lost its im2col copies: per-step event vs dense time on the real inputs of the three
# benchmark models (out/bench/*.evrt, 16-step clips, float32, 1 thread, min of 3 process_time runs on
# the shared 2-core Zen3 box, ±30 % noise), the thresholds that minimise the summed time per kind:
# full convs 0.30-0.35 (break-even ~0.3 at 128-256 outputs, lower for narrow outputs), 1x1 convs flat
# over 0.25-0.4 (~0.1 at 32 outputs, ~0.35 at 384-768), grouped convs (32 channels per group) ~0.25.
# A first layer fed by the sensor's two polarities (Cin <= 2) has rows of one or two weights per tap: the
# event path's per-input work is all overhead there. 3x3 2->32 at 128x128 (Spikformer/SDT's stem), 16
# steps: event path on the count frame 11.9 / 16.4 / 25.3 ms at densities 0.06 / 0.12 / 0.24 against
# 15.7 ms dense at any density: break-even ~0.1.
DENSE_ABOVE_CONV = 0.3
DENSE_ABOVE_1X1 = 0.3
DENSE_ABOVE_GROUPED = 0.25
DENSE_ABOVE_DW = 0.0
DENSE_ABOVE_FEW_IN = 0.1
DENSE_ABOVE = DENSE_ABOVE_CONV      # kept for callers that want one number


def default_dense_above(kh, kw, cig, cpg, groups):
    """The measured break-even for this layer kind (see the constants above)."""
    if groups == 1:
        if kh == kw == 1:
            return DENSE_ABOVE_1X1
        return DENSE_ABOVE_FEW_IN if cig <= 2 else DENSE_ABOVE_CONV
    if cig == 1 and cpg == 1:
        return DENSE_ABOVE_DW
    return DENSE_ABOVE_GROUPED


# Below these sizes a kernel stays on one thread: waking the sleeping workers and joining them cost
# 30-50 µs on the shared 2-core box (a 2-thread LIF step on 524k neurons took 155 µs against 125 µs on
# one), so only passes of ~200 µs or more are split. Elements of the array a pass walks; adds of the
# event path (pairs, ~10^10 per second).
PAR_MIN_ELEMENTS = 1 << 19
PAR_MIN_PAIRS = 2_000_000


@njit(cache=True, nogil=True)
def _taps(n_in, n_out, k, stride, pad):
    """For each input row i, the (output row, kernel row) pairs with o*stride - pad + kk == i.
    Returns (count (n_in,), out_idx (n_in, k), tap_idx (n_in, k))."""
    cnt = np.zeros(n_in, np.int64)
    oi = np.zeros((n_in, k), np.int64)
    ki = np.zeros((n_in, k), np.int64)
    for o in range(n_out):
        for kk in range(k):
            i = o * stride - pad + kk
            if 0 <= i < n_in:
                oi[i, cnt[i]] = o
                ki[i, cnt[i]] = kk
                cnt[i] += 1
    return cnt, oi, ki


@njit(cache=True, nogil=True)
def row_counts(row):
    """(non-zeros, non-zeros other than 1) of a 1-D row, as integer sums: they vectorise, and a row of
    0/1 values needs no float sum (its sum is its non-zero count)."""
    n = 0
    other = 0
    for c in range(row.size):
        v = row[c]
        n += v != 0
        other += (v != 0) & (v != 1)
    return n, other


@njit(cache=True, nogil=True)
def _counts_row(x, yy, ny, nx, cout_per_group):
    """(nnz, pairs, weighted, non-zeros other than 1) of input row yy (weighted summed from 0 over the
    row's pixels)."""
    xr = x[yy]
    cin = x.shape[2]
    nnz = 0
    pairs = 0
    weighted = 0.0
    others = 0
    for xx in range(x.shape[1]):
        xrow = xr[xx]
        n_px, other = row_counts(xrow)
        others += other
        s_px = np.float64(n_px)     # a sum of ones, exactly as the ordered float sum below gives it
        if other:
            s_px = 0.0
            for c in range(cin):
                s_px += np.float64(xrow[c])
        g = ny[yy] * nx[xx] * cout_per_group
        nnz += n_px
        pairs += n_px * g
        weighted += s_px * g
    return nnz, pairs, weighted, others


@njit(cache=True, nogil=True)
def conv2d_counts(x, kh, kw, stride, pad, ho, wo, cout_per_group):
    """(nnz, pairs, weighted) for a conv over x: every non-zero input reaches
    ny[y] * nx[x] * cout_per_group output neurons. weighted is summed per input row, then over the rows
    in order (the parallel variant's grouping; exact for the integer inputs whose ACs it counts)."""
    h, w, cin = x.shape
    ny = _taps(h, ho, kh, stride, pad)[0]
    nx = _taps(w, wo, kw, stride, pad)[0]
    nnz = 0
    pairs = 0
    weighted = 0.0
    for yy in range(h):
        n_r, p_r, w_r, _ = _counts_row(x, yy, ny, nx, cout_per_group)
        nnz += n_r
        pairs += p_r
        weighted += w_r
    return nnz, pairs, weighted


@njit(cache=True, nogil=True, parallel=True)
def conv2d_counts_par(x, kh, kw, stride, pad, ho, wo, cout_per_group):
    """conv2d_counts with the input rows split between threads; the row sums are added in row order
    afterwards, so the result equals conv2d_counts bit for bit. Also returns each row's non-zeros and
    non-zeros other than 1 (the event path's work estimate and its ones-only test)."""
    h, w, cin = x.shape
    ny = _taps(h, ho, kh, stride, pad)[0]
    nx = _taps(w, wo, kw, stride, pad)[0]
    rn = np.empty(h, np.int64)
    rp = np.empty(h, np.int64)
    rw = np.empty(h, np.float64)
    ro = np.empty(h, np.int64)
    for yy in prange(h):
        rn[yy], rp[yy], rw[yy], ro[yy] = _counts_row(x, yy, ny, nx, cout_per_group)
    nnz = 0
    pairs = 0
    weighted = 0.0
    for yy in range(h):
        nnz += rn[yy]
        pairs += rp[yy]
        weighted += rw[yy]
    return nnz, pairs, weighted, rn, ro


@njit(cache=True, nogil=True)
def _fill_bias(b, out):
    ho, wo, co = out.shape
    n = min(co, b.size)
    for oy in range(ho):
        for ox in range(wo):
            for c in range(n):        # an element loop: a slice assignment compiles numba's string
                out[oy, ox, c] = b[c]  # formatting for its shape-mismatch error (seconds of cold start)


# Weight bytes the event path keeps hot at a time: larger layers are cut into blocks of kernel taps and
# input channels, and the output map is accumulated block by block. Half the 512 KiB per-core L2 of the
# Zen3 box (the rest holds output rows and input lists); on the benchmark models' real inputs 128-256 KiB
# were best, 512 KiB and unblocked 10-35 % slower for 3x3 convs with 0.6-2.4 MB of weights (1x1
# expansions, 192 -> 768, were ~5 % faster unblocked: each block re-reads their wide output rows).
BLOCK_BYTES = 256 * 1024


@njit(cache=True, nogil=True)
def _nz_csr(x, groups, nsub, ptr, idx):
    """The non-zero channels of x (H, W, C) listed per (pixel, segment), each group's channels cut into
    nsub equal segments: segment s = ((y * W + x) * nsub + sub) * groups + g lists the offsets within the
    segment of its non-zero channels in idx[ptr[s]:ptr[s + 1]]. Segments are counted first (vectorised)
    and empty ones skipped; the others are compacted branch-free (write every offset, advance on
    non-zeros; an unsigned cursor spares the negative-index test): no mispredicted branch per element
    at 5-50 % density. ptr needs H*W*groups*nsub + 1 entries, idx x.size + 1.
    Returns whether all non-zeros are 1."""
    h, wd, c = x.shape
    cig = c // groups
    sw = cig // nsub
    ptr[0] = 0
    n = np.uint64(0)
    other = 0
    s = 1
    for yy in range(h):
        for xx in range(wd):
            row = x[yy, xx]
            for sub in range(nsub):
                for g in range(groups):
                    c0 = g * cig + sub * sw
                    seg = row[c0:c0 + sw]
                    cnt = 0
                    for ci in range(sw):
                        v = seg[ci]
                        cnt += v != 0
                        other += (v != 0) & (v != 1)
                    if cnt:
                        for ci in range(sw):
                            idx[n] = ci
                            n += np.uint64(seg[ci] != 0)
                    ptr[s] = n
                    s += 1
    return other == 0


@njit(cache=True, nogil=True)
def list_counts(li, n, h, wd, c, kh, kw, stride, pad, ho, wo, cout_per_group):
    """conv2d_counts from a spike list (flat indices into an (H, W, C) 0/1 map, li[:n], ascending)
    instead of a scan of the map: (nnz, pairs, weighted, non-zeros per input row). weighted = pairs,
    exactly as the scan's float sums of ones give it. The pixel of each index is found by walking
    forward (the list is ascending): no division per spike."""
    ny = _taps(h, ho, kh, stride, pad)[0]
    nx = _taps(wd, wo, kw, stride, pad)[0]
    rn = np.zeros(h, np.int64)
    pairs = 0
    yy = 0
    xx = 0
    end = c                                  # one past the last flat index of pixel (yy, xx)
    for q in range(n):
        i = np.int64(li[q])
        while i >= end:
            end += c
            xx += 1
            if xx == wd:
                xx = 0
                yy += 1
        rn[yy] += 1
        pairs += ny[yy] * nx[xx]
    return n, pairs * cout_per_group, np.float64(pairs * cout_per_group), rn


@njit(cache=True, nogil=True)
def _list_row_nnz(li, n, h, row_len):
    """Non-zeros per input row of an (H, W, C) map from its spike list (row_len = W * C)."""
    rn = np.zeros(h, np.int64)
    yy = 0
    end = row_len
    for q in range(n):
        i = np.int64(li[q])
        while i >= end:
            end += row_len
            yy += 1
        rn[yy] += 1
    return rn


@njit(cache=True, nogil=True)
def _list_csr(li, n, c, groups, nsub, ptr, idx):
    """_nz_csr's lists built from a spike list li[:n] (ascending flat indices) in O(n + segments),
    walking pixels forward and looking each channel's segment and offset up in tables (no division
    per spike). One segment per pixel (groups = nsub = 1): the list is already in segment order.
    Otherwise a counting sort by segment; ascending indices keep each segment's offsets ascending, so
    ptr and idx come out exactly as the scan writes them. ptr has one entry per segment + 1."""
    cig = c // groups
    sw = cig // nsub
    nps = groups * nsub                      # segments per pixel
    nseg = ptr.size - 1
    ptr[:] = 0
    if nps == 1:
        base = 0
        end = c
        pix = 0
        for q in range(n):
            i = np.int64(li[q])
            while i >= end:
                base = end
                end += c
                pix += 1
            idx[q] = i - base
            ptr[pix + 1] += 1
        for s in range(nseg):
            ptr[s + 1] += ptr[s]
        return
    seg_of = np.empty(c, np.int64)
    off_of = np.empty(c, np.int32)
    for ch in range(c):
        g = ch // cig
        r = ch - g * cig
        sub = r // sw
        seg_of[ch] = sub * groups + g
        off_of[ch] = r - sub * sw
    base = 0
    end = c
    s0 = 0
    for q in range(n):
        i = np.int64(li[q])
        while i >= end:
            base = end
            end += c
            s0 += nps
        ptr[s0 + seg_of[i - base] + 1] += 1
    for s in range(nseg):
        ptr[s + 1] += ptr[s]
    base = 0
    end = c
    s0 = 0
    for q in range(n):                       # ptr[s] runs as segment s's cursor, ending at its end
        i = np.int64(li[q])
        while i >= end:
            base = end
            end += c
            s0 += nps
        ch = i - base
        s = s0 + seg_of[ch]
        idx[ptr[s]] = off_of[ch]
        ptr[s] += 1
    for s in range(nseg, 0, -1):            # the cursors stand at the ends: shift back to the starts
        ptr[s] = ptr[s - 1]
    ptr[0] = 0


@njit(cache=True, nogil=True)
def _conv_scatter_part(x, w3, b2, kh, kw, stride, pad, out4, nsub, tpb, ptr, idx, ones, oy0, oy1, yb):
    """The event path on the output rows oy0 <= oy < oy1: out4[oy0:oy1] (Ho, Wo, groups, Cout/groups) =
    b2 + conv(x, w3), w3 the weight rows (kh*kw*Cin/groups, groups, Cout/groups), ptr/idx the non-zero
    lists of _nz_csr for the input rows from yb on. Each non-zero input pixel adds, for every tap, the weight rows of its non-zero
    channels into the output row of their group that the tap reaches. The work is done in blocks of tpb
    taps x one of nsub channel segments (see _blocks) so that a block's weights stay in L2; each block is
    a pass over the non-zero pixels. An output element gets its terms in the same order whatever rows
    the part has (the input rows are walked in order, those reaching no row of the part skipped), so
    output rows split between threads give the serial result bit for bit."""
    h, wd, cin = x.shape
    _, groups, cpg = w3.shape
    wo = out4.shape[1]
    cig = cin // groups
    sw = cig // nsub
    for oy in range(oy0, oy1):
        for ox in range(wo):
            for g in range(min(groups, b2.shape[0])):   # element loops, not out4[oy, ox] = b2 (see _fill_bias)
                for j in range(min(cpg, b2.shape[1])):
                    out4[oy, ox, g, j] = b2[g, j]
    ny, oy_t, ky_t = _taps(h, out4.shape[0], kh, stride, pad)
    nx, ox_t, kx_t = _taps(wd, wo, kw, stride, pad)
    y0 = max(0, oy0 * stride - pad)                 # the input rows that reach rows oy0 ... oy1 - 1
    y1 = min(h, (oy1 - 1) * stride - pad + kh)
    for sub in range(nsub):
        for t0 in range(0, kh * kw, tpb):
            for yy in range(y0, y1):
                for xx in range(wd):
                    s0 = (((yy - yb) * wd + xx) * nsub + sub) * groups
                    if ptr[s0] == ptr[s0 + groups]:
                        continue
                    xrow = x[yy, xx]
                    for a in range(ny[yy]):
                        oy = oy_t[yy, a]
                        if oy < oy0 or oy >= oy1:
                            continue
                        ky = ky_t[yy, a]
                        for e in range(nx[xx]):
                            t = ky * kw + kx_t[xx, e]
                            if t < t0 or t >= t0 + tpb:
                                continue
                            ox = ox_t[xx, e]                   # locals: the stores below would reload them
                            base = t * cig + sub * sw          # w3 row of the segment's channel 0
                            for g in range(groups):
                                k = ptr[s0 + g]
                                k1 = ptr[s0 + g + 1]
                                if k == k1:
                                    continue
                                orow = out4[oy, ox, g]
                                if not ones:
                                    c0 = g * cig + sub * sw
                                    for q in range(k, k1):
                                        r0 = w3[base + idx[q], g]
                                        v = xrow[c0 + idx[q]]
                                        for j in range(cpg):
                                            orow[j] += v * r0[j]
                                    continue
                                # spikes: eight weight rows summed per pass over orow, so orow is loaded
                                # and stored once per eight rows (1.5-2x the adds/s of one row at a time;
                                # only the rounding order changes). Written inline: a call per (pixel,
                                # tap) cost ~20 ns.
                                while k + 8 <= k1:
                                    r0 = w3[base + idx[k], g]
                                    r1 = w3[base + idx[k + 1], g]
                                    r2 = w3[base + idx[k + 2], g]
                                    r3 = w3[base + idx[k + 3], g]
                                    r4 = w3[base + idx[k + 4], g]
                                    r5 = w3[base + idx[k + 5], g]
                                    r6 = w3[base + idx[k + 6], g]
                                    r7 = w3[base + idx[k + 7], g]
                                    for j in range(cpg):
                                        orow[j] += (((r0[j] + r1[j]) + (r2[j] + r3[j]))
                                                    + ((r4[j] + r5[j]) + (r6[j] + r7[j])))
                                    k += 8
                                while k < k1:
                                    r0 = w3[base + idx[k], g]
                                    for j in range(cpg):
                                        orow[j] += r0[j]
                                    k += 1


@njit(cache=True, nogil=True)
def _conv_scatter(x, w3, b2, kh, kw, stride, pad, out4, nsub, tpb, ptr, idx):
    """The event path on one thread: all output rows as one part."""
    ones = _nz_csr(x, w3.shape[1], nsub, ptr, idx)
    _conv_scatter_part(x, w3, b2, kh, kw, stride, pad, out4, nsub, tpb, ptr, idx, ones, 0, out4.shape[0], 0)


@njit(cache=True, nogil=True)
def _conv_scatter_list(li, nl, w3, b2, kh, kw, stride, pad, out4, nsub, tpb, ptr, idx, x):
    """_conv_scatter fed by a spike list: the lists come from li[:nl], not from a scan of x (0/1)."""
    _list_csr(li, nl, x.shape[2], w3.shape[1], nsub, ptr, idx)
    _conv_scatter_part(x, w3, b2, kh, kw, stride, pad, out4, nsub, tpb, ptr, idx, True, 0, out4.shape[0], 0)


@njit(cache=True, nogil=True, parallel=True)
def _conv_scatter_par_list(li, nl, x, w3, b2, kh, kw, stride, pad, out4, nsub, tpb, ptr, idx, n, row_nnz):
    """_conv_scatter_par fed by a spike list: the whole map's lists are built once (O(spikes)), and each
    band reads its input rows from them; the bands and the adds are those of the scan path."""
    h, wd, cin = x.shape
    _list_csr(li, nl, cin, w3.shape[1], nsub, ptr, idx)
    bands = row_bands(_out_row_work(h, wd, out4.shape[0], kh, stride, pad, row_nnz), n)
    for i in prange(bands.size - 1):
        _conv_scatter_part(x, w3, b2, kh, kw, stride, pad, out4, nsub, tpb, ptr, idx, True,
                           bands[i], bands[i + 1], 0)


@njit(cache=True, nogil=True)
def row_bands(work, n):
    """Cut rows with the given work into at most n bands of consecutive rows with about equal work:
    bands[i] .. bands[i + 1]. Each band gets at least one row; rows with no work still belong to one."""
    rows = work.size
    n = max(1, min(n, rows))
    total = 0.0
    for r in range(rows):
        total += work[r]
    bands = np.empty(n + 1, np.int64)
    bands[0] = 0
    acc = 0.0
    r = 0
    for i in range(1, n):
        goal = total * i / n
        while r < rows - (n - i) and (acc + work[r] <= goal or r < bands[i - 1] + 1):
            acc += work[r]
            r += 1
        bands[i] = r
    bands[n] = rows
    return bands


@njit(cache=True, nogil=True)
def _out_row_work(h, wd, ho, kh, stride, pad, row_nnz):
    """Non-zero inputs reaching each output row (the event path's work per row)."""
    work = np.zeros(ho, np.float64)
    ny, oy_t, _ = _taps(h, ho, kh, stride, pad)
    for yy in range(h):
        for a in range(ny[yy]):
            work[oy_t[yy, a]] += row_nnz[yy] + wd * 0.05     # + a little per pixel visited
    return work


@njit(cache=True, nogil=True, parallel=True)
def row_nonzeros_par(x):
    """(non-zeros, non-zeros other than 1) of each input row of x (H, W, C), rows split between threads."""
    h, wd, _ = x.shape
    rn = np.zeros(h, np.int64)
    ro = np.zeros(h, np.int64)
    for yy in prange(h):
        for xx in range(wd):
            n_px, other = row_counts(x[yy, xx])
            rn[yy] += n_px
            ro[yy] += other
    return rn, ro


@njit(cache=True, nogil=True, parallel=True)
def _conv_scatter_par(x, w3, b2, kh, kw, stride, pad, out4, nsub, tpb, ptr, idx, n, row_nnz, ones):
    """The event path with the output rows cut into n bands of about equal work, one per thread, in
    one fork-join: each band lists the non-zeros of the input rows it reads (its own rows of ptr and
    idx: n slots of a whole map's size) and scatters them. `ones` is the whole map's (the kernel adds
    eight rows at a time only when every non-zero is 1, so every band must take the same branch)."""
    h, wd, cin = x.shape
    groups = w3.shape[1]
    bands = row_bands(_out_row_work(h, wd, out4.shape[0], kh, stride, pad, row_nnz), n)
    pspan = h * wd * nsub * groups + 1
    ispan = x.size + 1
    for i in prange(bands.size - 1):
        oy0 = bands[i]
        oy1 = bands[i + 1]
        y0 = max(0, oy0 * stride - pad)
        y1 = max(y0, min(h, (oy1 - 1) * stride - pad + kh))
        pb = ptr[i * pspan:(i + 1) * pspan]
        ib = idx[i * ispan:(i + 1) * ispan]
        _nz_csr(x[y0:y1], groups, nsub, pb, ib)
        _conv_scatter_part(x, w3, b2, kh, kw, stride, pad, out4, nsub, tpb, pb, ib, ones, oy0, oy1, y0)


@njit(cache=True, nogil=True)
def _scatter_depthwise(x, w, b, stride, pad, out):
    """Depthwise event path (w (kh, kw, 1, C)): every non-zero input adds x * w[ky, kx, 0, c] to the
    channel c of each output it reaches (rows of one weight do not suit the row-summing kernel)."""
    h, wd, c = x.shape
    kh, kw = w.shape[0], w.shape[1]
    ho, wo, _ = out.shape
    _fill_bias(b, out)
    ny, oy_t, ky_t = _taps(h, ho, kh, stride, pad)
    nx, ox_t, kx_t = _taps(wd, wo, kw, stride, pad)
    nzc = np.empty(c, np.int64)
    for yy in range(h):
        for xx in range(wd):
            xrow = x[yy, xx]
            nz = 0
            for ch in range(c):
                nzc[nz] = ch
                nz += xrow[ch] != 0
            for a in range(ny[yy]):
                for e in range(nx[xx]):
                    orow = out[oy_t[yy, a], ox_t[xx, e]]
                    wrow = w[ky_t[yy, a], kx_t[xx, e], 0]
                    for t in range(nz):
                        ch = nzc[t]
                        orow[ch] += xrow[ch] * wrow[ch]


_tls = threading.local()


def _scratch(name, n, dtype):
    """A per-thread buffer of n elements reused across calls: a fresh multi-MB array per call costs its
    page faults (~10 % of a sparse layer's time)."""
    buf = getattr(_tls, name, None)
    if buf is None or buf.size < n or buf.dtype != dtype:
        buf = np.empty(n, dtype)
        setattr(_tls, name, buf)
    return buf[:n]


def _blocks(taps, cig, cpg, groups, itemsize, block_bytes):
    """(nsub, tpb): each group's channels cut into nsub segments (the smallest divisor of cig whose rows
    of one tap, all groups, fit in block_bytes) and tpb taps per block."""
    nsub = 1
    while nsub < cig and (cig % nsub or groups * (cig // nsub) * cpg * itemsize > block_bytes):
        nsub += 1
    return nsub, max(1, block_bytes // (groups * (cig // nsub) * cpg * itemsize))


def conv2d_scatter_only(x, w, b, stride, pad, groups, out, block_bytes=BLOCK_BYTES, threads=None, rows=None,
                        spikes=None):
    """The event path alone: out = b + conv(x, w); touches only non-zero inputs. No counts.
    threads: None = get_threads(); the result does not depend on it. rows: row_nonzeros_par(x) when
    the caller has it (the count pass). spikes: (li, n) when x is a 0/1 map whose non-zeros are the
    ascending flat indices li[:n] (a neuron's spike list): the lists are built from it, not by a scan."""
    kh, kw, cig, cout = w.shape
    cpg = cout // groups
    if cig == 1 and cpg == 1 and groups > 1:
        _scatter_depthwise(x, w, b, stride, pad, out)
        return
    nsub, tpb = _blocks(kh * kw, cig, cpg, groups, w.itemsize, block_bytes)
    # weight and output rows split by group: every row the kernel adds is then a whole (contiguous) row
    w3 = np.ascontiguousarray(w).reshape(kh * kw * cig, groups, cpg)
    b2 = np.ascontiguousarray(b).reshape(groups, cpg)
    o = out if out.flags.c_contiguous else np.empty(out.shape, out.dtype)
    o4 = o.reshape(o.shape[0], o.shape[1], groups, cpg)
    n = get_threads() if threads is None else threads
    if spikes is not None:
        li, nl = spikes
        ptr = _scratch("ptr", x.shape[0] * x.shape[1] * groups * nsub + 1, np.int64)
        idx = _scratch("idx", x.size + 1, np.int32)
        if n > 1 and o.shape[0] > 1:
            rn = rows[0] if rows is not None else _list_row_nnz(li, nl, x.shape[0], x.shape[1] * x.shape[2])
            _conv_scatter_par_list(li, nl, x, w3, b2, kh, kw, stride, pad, o4, nsub, tpb, ptr, idx, n, rn)
        else:
            _conv_scatter_list(li, nl, w3, b2, kh, kw, stride, pad, o4, nsub, tpb, ptr, idx, x)
    elif n > 1 and o.shape[0] > 1:
        if rows is None:
            rows = row_nonzeros_par(x)
        ptr = _scratch("ptr", n * (x.shape[0] * x.shape[1] * groups * nsub + 1), np.int64)
        idx = _scratch("idx", n * (x.size + 1), np.int32)
        _conv_scatter_par(x, w3, b2, kh, kw, stride, pad, o4, nsub, tpb, ptr, idx, n, rows[0], rows[1].sum() == 0)
    else:
        ptr = _scratch("ptr", x.shape[0] * x.shape[1] * groups * nsub + 1, np.int64)
        idx = _scratch("idx", x.size + 1, np.int32)
        _conv_scatter(x, w3, b2, kh, kw, stride, pad, o4, nsub, tpb, ptr, idx)
    if o is not out:
        out[...] = o


def _conv_dense_depthwise_impl(x, w, b, stride, pad, out):
    """Dense output-stationary depthwise conv (w (kh, kw, 1, C)), channels innermost, no zero test.
    Output rows are independent (the parallel twin splits them between threads)."""
    h, wd, c = x.shape
    kh, kw = w.shape[0], w.shape[1]
    ho, wo, _ = out.shape
    for oy in prange(ho):
        for ox in range(wo):
            orow = out[oy, ox]
            orow[:] = b
            for ky in range(kh):
                iy = oy * stride - pad + ky
                if iy < 0 or iy >= h:
                    continue
                for kx in range(kw):
                    ix = ox * stride - pad + kx
                    if ix < 0 or ix >= wd:
                        continue
                    xrow = x[iy, ix]
                    wrow = w[ky, kx, 0]
                    for j in range(c):
                        orow[j] += xrow[j] * wrow[j]


def _im2col_impl(x, kh, kw, stride, pad, ho, wo, cols):
    """cols (groups, Ho*Wo, kh*kw*Cin/groups) <- each output's input patch in w's (ky, kx, ci) order,
    zeros outside the map. A copy: output rows split between threads (one thread when numba has one)."""
    h, wd, cin = x.shape
    groups = cols.shape[0]
    cig = cin // groups
    for oy in prange(ho):
        for g in range(groups):
            c0 = g * cig
            for ox in range(wo):
                crow = cols[g, oy * wo + ox]
                for ky in range(kh):
                    iy = oy * stride - pad + ky
                    for kx in range(kw):
                        ix = ox * stride - pad + kx
                        dst = crow[(ky * kw + kx) * cig:(ky * kw + kx + 1) * cig]
                        if 0 <= iy < h and 0 <= ix < wd:
                            src = x[iy, ix, c0:c0 + cig]
                            for c in range(cig):
                                dst[c] = src[c]
                        else:
                            for c in range(cig):
                                dst[c] = 0


_im2col, _im2col_par = serial_and_parallel(_im2col_impl)


def _conv_dense_blas(x, w, b, stride, pad, groups, out):
    """im2col + BLAS: one matmul (groups == 1; a plain reshape for 1x1 stride-1 unpadded convs) or one
    batched matmul over the groups. The columns are written by a numba loop into a reused buffer:
    np.pad + a strided-view copy into a new array took ~20 % of the path (copies and page faults)."""
    kh, kw, cig, cout = w.shape
    ho, wo, _ = out.shape
    cpg = cout // groups
    p, k = ho * wo, kh * kw * cig
    if kh == kw == 1 and pad == 0 and groups == 1:
        cols = x[::stride, ::stride][:ho, :wo].reshape(1, p, k)
    else:
        cols = _scratch("cols", groups * p * k, x.dtype).reshape(groups, p, k)
        par = get_threads() > 1 and cols.size >= PAR_MIN_ELEMENTS
        (_im2col_par if par else _im2col)(x, kh, kw, stride, pad, ho, wo, cols)
    if groups == 1:
        w2 = w.reshape(k, cout)
        if out.flags.c_contiguous and cols.dtype == w2.dtype == out.dtype and cols.flags.c_contiguous:
            matmul(cols[0], w2, out.reshape(p, cout))
        else:
            out[...] = (cols[0] @ w2).reshape(ho, wo, cout)
    else:
        wg = w.reshape(kh * kw, cig, groups, cpg).transpose(2, 0, 1, 3).reshape(groups, k, cpg)
        out[...] = np.matmul(cols, wg).transpose(1, 0, 2).reshape(ho, wo, cout)
    out += b


_conv_dense_depthwise, _conv_dense_depthwise_par = serial_and_parallel(_conv_dense_depthwise_impl)


def conv2d_dense(x, w, b, stride, pad, groups, out):
    """The dense path alone: out = b + conv(x, w), cost independent of sparsity. No counts.
    Depthwise convs use a numba loop (a matmul per channel would be 1 x 1); the rest im2col + BLAS."""
    if w.shape[2] == 1 and w.shape[3] == groups and groups > 1:
        par = get_threads() > 1 and out.size >= PAR_MIN_ELEMENTS
        (_conv_dense_depthwise_par if par else _conv_dense_depthwise)(x, w, b, stride, pad, out)
    else:
        _conv_dense_blas(x, w, b, stride, pad, groups, out)


def conv2d_scatter(x, w, b, stride, pad, groups, out, dense_above=None, spikes=None) -> Counts:
    """out (Ho, Wo, Cout) <- b + conv(x, w); returns Counts(nnz, pairs, weighted).

    pairs = number of (non-zero input, output neuron) pairs in bounds; weighted = Σ of the input value
    over those pairs (float); nnz comes from the count pass that picks the path (no extra scan of x).
    Takes the event path unless more than `dense_above` of the inputs are non-zero (None: the measured
    break-even for the layer kind; >= 1 forces the event path, a negative value the dense path); the
    counts do not depend on the path. spikes: (li, n), x's spike list (see conv2d_scatter_only): the
    counts and the event path's lists then come from it instead of scans of x; same results, bit for bit.
    """
    kh, kw, cig, cout = w.shape
    if x.shape[2] != cig * groups or cout % groups:
        raise ValueError(f"conv2d_scatter: x has {x.shape[2]} channels, w {w.shape} with groups={groups}")
    if dense_above is None:
        dense_above = default_dense_above(kh, kw, cig, cout // groups, groups)
    ho, wo = out.shape[0], out.shape[1]
    n = get_threads()
    rows = None
    if spikes is not None:
        nnz, pairs, weighted, rn = list_counts(spikes[0], spikes[1], x.shape[0], x.shape[1], x.shape[2], kh, kw,
                                               stride, pad, ho, wo, cout // groups)
        rows = (rn, None)
    elif n > 1 and x.size >= PAR_MIN_ELEMENTS:
        nnz, pairs, weighted, rn, ro = conv2d_counts_par(x, kh, kw, stride, pad, ho, wo, cout // groups)
        rows = (rn, ro)
    else:
        nnz, pairs, weighted = conv2d_counts(x, kh, kw, stride, pad, ho, wo, cout // groups)
    if nnz > dense_above * x.size:
        conv2d_dense(x, w, b, stride, pad, groups, out)
    else:
        conv2d_scatter_only(x, w, b, stride, pad, groups, out, threads=n if pairs >= PAR_MIN_PAIRS else 1, rows=rows,
                            spikes=spikes)
    return Counts(int(nnz), int(pairs), float(weighted))


def conv2d_events(ys, xs, cs, w, b, stride, pad, out) -> Counts:
    """First layer fed by raw events: out = b + Σ_events w[:, :, c] placed at (y, x) (groups = 1).
    Each event adds its weight slice once (duplicates add twice); ys, xs, cs may be any integer dtype.
    Only in-bounds outputs are touched (the caller validates events against the sensor).
    Counts: nnz = events, pairs = weighted = Σ_events (number of in-bounds outputs reached) × Cout."""
    pairs = int(_conv2d_events(ys, xs, cs, w, b, stride, pad, out))
    return Counts(len(ys), pairs, float(pairs))


@njit(cache=True, nogil=True)
def _conv2d_events(ys, xs, cs, w, b, stride, pad, out):
    """The event loop of conv2d_events; returns pairs."""
    kh, kw, _, cout = w.shape
    ho, wo, _ = out.shape
    _fill_bias(b, out)
    pairs = 0
    for e in range(ys.shape[0]):
        y = np.int64(ys[e])
        x = np.int64(xs[e])
        c = np.int64(cs[e])
        for ky in range(kh):
            t = y + pad - ky
            if t < 0:
                break              # t only decreases with ky
            if t % stride:
                continue
            oy = t // stride
            if oy >= ho:
                continue
            for kx in range(kw):
                u = x + pad - kx
                if u < 0:
                    break
                if u % stride:
                    continue
                ox = u // stride
                if ox >= wo:
                    continue
                orow = out[oy, ox]
                wrow = w[ky, kx, c]
                for j in range(cout):
                    orow[j] += wrow[j]
                pairs += cout
    return pairs
