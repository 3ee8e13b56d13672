"""The TRACE relation model in Flax Linen (arXiv 2108.08121; official MCG-NJU/TRACE
lib/modeling_rel/model_builder_rel.py, lib/combine_tree/cluster_tree.py, cluster_tree3d.py).

Per key frame: object (leaf) features + class embeddings -> temporal attention per node over the
T slices of the 3D feature maps (box repeated over time, as the official ``get_tracklet`` does)
-> bottom-up child-sum Tree-GRU and top-down GRU over the HRTree in ``groups`` channel groups ->
refined object features -> target-adaptive spatial attention over each pair's union box
(subject and object queries) + semantic branch with the LCA region -> summed predicate logits
with a learnable frequency bias. All shapes are padded (``n_max`` boxes, ``hrtree.max_nodes``
node slots) and masked, so the whole forward pass jits.

Mixed precision (``TRACE.dtype``, ``layers.precision``): the image/feature inputs and the box
geometry features are cast to the compute dtype; the boxes themselves, the HRTree (its scores and
sorts), the LCAs and RoIAlign's sampling stay float32. Gathers whose gradient sums many terms
(`pick`, RoIAlign, the Tree-GRU's child sums) and the attention softmaxes run in float32; the
classifier heads (`F32_PARAMS`) compute the logits in float32.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxpapers.layers import precision, resnet
from jaxpapers.methods.trace_vidsgg import backbones, hrtree
from jaxpapers.methods.trace_vidsgg.roi_align import roi_align

xavier = nn.initializers.xavier_uniform()
orth = nn.initializers.orthogonal()
leaky = lambda x: nn.leaky_relu(x, 0.1)  # noqa: E731  (LeakyReLU(0.1) everywhere in TRACE)

# Mixed precision: the layers that produce logits keep float32 parameters (`precision.apply`'s
# ``keep``), so the predicate / object logits and the frequency bias are computed in float32.
F32_PARAMS = (
    r"^(relation_infer_spa|relation_infer_sem|sem_s|sem_o|cem_cls|det_cls)/",
    r"^freq_bias$",
)


def pick(x: jax.Array, idx: jax.Array) -> jax.Array:
    """``x[:, idx]`` in ``x``'s dtype, gathered from a float32 copy: the gradient of a gather is
    a scatter-add, which sums in the operand's dtype, and rows here are read by up to n (pairs) or
    all (children, LCA) entries; in float32 the casts are no-ops."""
    return x.astype(jnp.float32)[:, idx].astype(x.dtype)


def dense(features: int, bias: bool = True, init=xavier, name: str | None = None) -> nn.Dense:
    return nn.Dense(features, use_bias=bias, kernel_init=init, name=name)


def _per_group(init):
    """Initialises a (G, ...) stack of kernels with ``init`` applied to each group's slice."""
    return lambda key, shape, dtype=jnp.float32: jax.vmap(lambda k: init(k, shape[1:], dtype))(
        jax.random.split(key, shape[0])
    )


class TreeGRU(nn.Module):
    """Bottom-up child-sum Tree-GRU + top-down GRU (tree_message_passing2D, mode 'tree-gru').

    One independent GRU per channel group (MSP_GROUP): inputs x (G, M, F) over a flattened
    batch of trees (node ids global: frame * M + id; parent -1 for roots and padding). Weight
    names follow the official module (W*, U* without/with bias, *d for top-down); GRU weights
    are orthogonal, FFN1/FFN2 Xavier.
    """

    hidden: int
    out_dim: int
    num_layers: int  # static bound on the root level (hrtree.max_layers)

    @nn.compact
    def __call__(self, x, parent, level, root_level):
        g, m, f = x.shape
        hdim = self.hidden
        w = {
            n: self.param(n, _per_group(orth), (g, f, hdim))
            for n in ("Wh", "Wz", "Wr", "Whd", "Wzd", "Wrd")
        }
        u = {
            n: self.param(n, _per_group(orth), (g, hdim, hdim))
            for n in ("Uh", "Uz", "Ur", "Uhd", "Uzd", "Urd")
        }
        ub = {
            n: self.param(n + "_bias", nn.initializers.zeros, (g, 1, hdim))
            for n in ("Uz", "Ur", "Uzd", "Urd")
        }
        wx = {n: jnp.einsum("gmf,gfh->gmh", x, k) for n, k in w.items()}

        def U(name, h):  # noqa: N802
            y = jnp.einsum("gmh,ghk->gmk", h, u[name])
            return precision.add_bias(y, ub[name]) if name in ub else y

        seg = jnp.where(parent >= 0, parent, m)  # out of range -> dropped by segment_sum
        pidx = jnp.clip(parent, 0, m - 1)

        def segsum(v):  # sum over each node's children, in float32 (see `pick`)
            f = jax.vmap(lambda a: jax.ops.segment_sum(a, seg, m + 1)[:m])
            return f(v.astype(jnp.float32)).astype(v.dtype)

        # Leaves: h = (1 - z) * tanh(W_h x).
        h0 = jnp.where(
            (level == 0)[None, :, None], (1.0 - nn.sigmoid(wx["Wz"])) * jnp.tanh(wx["Wh"]), 0.0
        )

        def up(k, h):
            child = (level == k - 1)[None, :, None]
            h_sum = segsum(jnp.where(child, h, 0.0))
            r = nn.sigmoid(pick(wx["Wr"], pidx) + U("Ur", h))  # one reset gate per child
            rh = segsum(jnp.where(child, r * h, 0.0))
            z = nn.sigmoid(wx["Wz"] + U("Uz", h_sum))
            hk = z * h_sum + (1.0 - z) * jnp.tanh(wx["Wh"] + U("Uh", rh))
            return jnp.where((level == k)[None, :, None], hk, h)

        h = jax.lax.fori_loop(1, self.num_layers + 1, up, h0)

        def down(i, hd):  # levels num_layers-1 .. 0; each node reads its single parent
            k = self.num_layers - 1 - i
            hp = pick(hd, pidx)
            z, r = nn.sigmoid(wx["Wzd"] + U("Uzd", hp)), nn.sigmoid(wx["Wrd"] + U("Urd", hp))
            hk = z * hp + (1.0 - z) * jnp.tanh(wx["Whd"] + U("Uhd", r * hp))
            return jnp.where(((level == k) & (parent >= 0))[None, :, None], hk, hd)

        hd = jax.lax.fori_loop(
            0, self.num_layers, down, jnp.where((level == root_level)[None, :, None], h, 0.0)
        )

        def ffn(name, v):
            k = self.param(name, _per_group(xavier), (g, hdim, self.out_dim))
            b = self.param(name + "_bias", nn.initializers.zeros, (g, 1, self.out_dim))
            return precision.add_bias(jnp.einsum("gmh,gho->gmo", v, k), b)

        return ffn("FFN1", h) + ffn("FFN2", hd)


class TemporalAttention(nn.Module):
    """temporal_obj_attention / temporal_r_attention + the value MLP, added residually."""

    atten_dim: int

    @nn.compact
    def __call__(self, s, o):
        """s (..., K) key-frame feature; o (..., T, K') per-slice features -> (..., K)."""
        k = s.shape[-1]
        f32 = jnp.float32  # attention logits, softmax and weighted sum in float32
        q = dense(self.atten_dim, False, name="q_s")(s)[..., None, :].astype(f32)
        kk = dense(self.atten_dim, False, name="q_o")(o).astype(f32)
        a = nn.softmax(jnp.sum(q * kk, -1) / math.sqrt(self.atten_dim), axis=-1)
        v = jnp.sum(a[..., None] * o.astype(f32), axis=-2).astype(o.dtype)
        v = dense(k // 4, False, name="val1")(v)
        v = dense(k, False, name="val2")(nn.relu(nn.LayerNorm(name="val_ln")(v)))
        return s + v


class BoxHead(nn.Module):
    """Flatten + 2-layer MLP over RoIAligned features (the roi_2mlp_head shape)."""

    dim: int

    @nn.compact
    def __call__(self, pooled):
        x = pooled.reshape(pooled.shape[:-3] + (-1,))
        return dense(self.dim)(nn.relu(dense(self.dim)(x)))


class SmallBackbone(nn.Module):
    """Offline stand-in for the frozen detector body, ResNet-50-DC5 and I3D (stride 4)."""

    channels: int
    temporal: bool = False

    @nn.compact
    def __call__(self, x):
        k = (3, 3, 3) if self.temporal else (3, 3)
        s = (1, 2, 2) if self.temporal else (2, 2)
        x = nn.relu(nn.Conv(self.channels, k, s)(x))
        x = nn.relu(nn.Conv(self.channels, k, s)(x))
        return nn.relu(nn.Conv(self.channels, k)(x))


class TRACE(nn.Module):
    """The relation model. ``cfg`` is config.model (a frozen ConfigDict, hashable).

    ``dtype``: compute dtype of the activations (module docstring); the train step passes the
    parameters in it through ``precision.apply`` and the batch as a keyword argument, which
    ``precision.apply`` leaves uncast (the boxes must stay float32).
    """

    cfg: Any
    dtype: Any = jnp.float32

    @property
    def m_pad(self) -> int:
        return hrtree.max_nodes(self.cfg.n_max)

    @property
    def l_pad(self) -> int:
        return hrtree.max_layers(self.cfg.n_max)

    @nn.compact
    def __call__(self, batch: dict[str, jax.Array], train: bool) -> dict[str, jax.Array]:
        c = self.cfg
        boxes, num = batch["boxes"].astype(jnp.float32), batch["num_boxes"]
        b, n = boxes.shape[:2]
        feat2d, feat3d, det_feat, det_pooled = self.features(batch, boxes)
        det_logits, p, embeds, obj_vec = self.object_nodes(batch, det_feat)
        tree = self.build_tree(boxes, num)
        node_out = self.tree_context(obj_vec, feat2d, feat3d, tree)
        obj_feat = det_feat + dense(c.feat_dim, name="restore_obj_feat")(leaky(node_out[:, :n]))
        obj_logits = dense(c.num_obj_classes, name="cem_cls")(nn.relu(obj_feat))

        # Pairs: all ordered (s, o) of the padded boxes, masked to valid s != o.
        si, oi = jnp.meshgrid(jnp.arange(n), jnp.arange(n), indexing="ij")
        si, oi = si.reshape(-1), oi.reshape(-1)
        box_ok = jnp.arange(n)[None, :] < num[:, None]
        pair_ok = box_ok[:, si] & box_ok[:, oi] & (si != oi)[None, :]

        spa = self.spatial_branch(feat2d, boxes, obj_feat, si, oi)
        sem, lca = self.semantic_branch(p, embeds, node_out, tree, si, oi)
        logits = self.predicate_logits(batch, spa, sem, det_pooled, det_logits, si, oi, train)
        return {
            "rel_logits": logits.reshape(b, n, n, -1),
            "pair_mask": pair_ok.reshape(b, n, n),
            "obj_logits": obj_logits,
            "det_logits": det_logits,
            "lca": lca.reshape(b, n, n),
            "tree_parent": tree.parent,
        }

    def object_nodes(self, batch, det_feat):
        """(a) Object nodes: detector feature + class embedding (GloVe-initialisable tables).

        Returns the detector logits, the class distribution ``p`` the embeddings read, the
        (subject, object) embedding tables of the semantic branch and the object vectors.
        """
        c = self.cfg
        num_cls = c.num_obj_classes
        det_logits = dense(num_cls, name="det_cls")(nn.relu(det_feat))
        if c.mode == "predcls":
            p = jax.nn.one_hot(batch["labels"], num_cls)
        else:  # SGCls: the (stand-in) detector's class distribution, as embed_obj_det reads it
            p = jax.lax.stop_gradient(nn.softmax(det_logits))
        p = p.astype(self.dtype)  # softmax in float32 (det_logits are), embedding lookups not
        embed = lambda name: self.param(name, nn.initializers.normal(0.1), (num_cls, c.embed_dim))  # noqa: E731
        # Created together, in this order: a parameter's init key follows its creation order.
        e_det, e_s, e_o = embed("embed_obj_det"), embed("embed_s"), embed("embed_o")
        obj_vec = det_feat + dense(c.feat_dim, name="after_obj_det_embed")(leaky(p @ e_det))
        return det_logits, p, (e_s, e_o), obj_vec

    def tree_context(self, obj_vec, feat2d, feat3d, tree):
        """(b) temporal attention per node, then (c) hierarchical message passing over the tree.

        Returns every tree node's context feature (B, M, hidden): leaves 0..n-1 are the objects,
        internal nodes the regions.
        """
        c = self.cfg
        n = obj_vec.shape[1]
        # (b) Over the T slices (key-frame box repeated in time). Leaves are node ids 0..n-1 with
        # their own boxes, so one RoIAlign per map serves the object and the region nodes (region
        # features are only read at internal nodes).
        temporal = self.temporal_pool(tree.boxes, feat3d)  # (B, M, T, P, P, C3)
        obj_vec = self.temporal(obj_vec, temporal[:, :n], "obj")
        reg_pooled = roi_align(feat2d, tree.boxes, c.pool, c.spatial_scale, c.sampling_ratio)
        reg_vec = self.temporal(BoxHead(c.feat_dim, name="fc_r")(reg_pooled), temporal, "reg")

        # (c) Groups of channels, each its own Tree-GRU.
        o2c = dense(c.hidden, False, name="o2c")(nn.relu(obj_vec))
        r2c = dense(c.hidden, False, name="r2c")(nn.relu(reg_vec))
        o2c_nodes = jnp.zeros((obj_vec.shape[0], self.m_pad, c.hidden), o2c.dtype)
        o2c_nodes = o2c_nodes.at[:, :n].set(o2c)
        x_nodes = jnp.where((tree.level == 0)[..., None], o2c_nodes, r2c)
        if c.context == "none":
            return x_nodes
        return self.message_passing(x_nodes, tree)

    def spatial_branch(self, feat2d, boxes, obj_feat, si, oi):
        """(d) Target-adaptive spatial attention over each pair's union box: (B, N², hidden)."""
        c = self.cfg
        a = c.atten_dim
        kmap = nn.Conv(a, (1, 1), kernel_init=xavier, name="atten_q_map")(feat2d)
        vmap = nn.Conv(a, (1, 1), kernel_init=xavier, name="spatio_atten_map")(feat2d)
        kv = jnp.concatenate([kmap, vmap], -1)
        ub = jnp.concatenate(
            [
                jnp.minimum(boxes[:, si, :2], boxes[:, oi, :2]),
                jnp.maximum(boxes[:, si, 2:], boxes[:, oi, 2:]),
            ],
            -1,
        )
        kv = roi_align(kv, ub, c.pool, c.spatial_scale, c.sampling_ratio)  # (B, N², P, P, 2A)
        kq, vv = kv[..., :a], kv[..., a:]
        q_s = pick(dense(a, name="spatio_atten_s")(leaky(obj_feat)), si)
        q_o = pick(dense(a, name="spatio_atten_o")(leaky(obj_feat)), oi)

        def attend(q):  # softmax and weighting in float32 (no-op casts in float32)
            sc = jnp.einsum("bra,brxya->brxy", q, kq).astype(jnp.float32)
            w = nn.softmax(sc.reshape(sc.shape[:2] + (-1,)), -1).reshape(sc.shape)
            return (vv.astype(jnp.float32) * w[..., None]).astype(vv.dtype)

        spa = leaky(
            nn.Conv(a, (1, 1), name="spatio_inferA")(attend(q_s))
            + nn.Conv(a, (1, 1), name="spatio_inferB")(attend(q_o))
        )
        spa = (spa + vv).reshape(kv.shape[0], kv.shape[1], -1)
        return dense(c.hidden, name="spatio_infer_fc")(spa)

    def semantic_branch(self, p, embeds, node_out, tree, si, oi):
        """(e) Subject / object embeddings + the LCA region's tree feature: (B, N², hidden), LCA."""
        c = self.cfg
        e_s, e_o = embeds
        sem = pick(dense(c.hidden, name="sem_s_e")(leaky(p @ e_s)), si) + pick(
            dense(c.hidden, name="sem_o_e")(leaky(p @ e_o)), oi
        )
        b, pairs = p.shape[0], si.shape[0]
        if c.context == "none":
            return sem, jnp.full((b, pairs), -1, jnp.int32)
        lca = jax.vmap(hrtree.lca)(
            tree.link, jnp.broadcast_to(si, (b, pairs)), jnp.broadcast_to(oi, (b, pairs))
        )
        lca_feat = jnp.take_along_axis(  # from float32: most pairs share few LCAs (see `pick`)
            node_out.astype(jnp.float32), jnp.clip(lca, 0)[..., None], axis=1
        ).astype(node_out.dtype)
        return sem + dense(c.hidden, name="sem_r")(leaky(lca_feat)), lca

    def predicate_logits(self, batch, spa, sem, det_pooled, det_logits, si, oi, train):
        """Predicate logits of every ordered pair: both branches, S/O heads, frequency bias."""
        c = self.cfg
        num_cls = c.num_obj_classes

        def infer(x, name):
            x = nn.Dropout(c.dropout, deterministic=not train)(x)
            return dense(c.num_predicates, name=name)(leaky(x))

        # S_Head / O_Head: fine-tuned copies of the box head on the subject / object RoIs.
        s_feat = BoxHead(c.feat_dim, name="S_Head")(det_pooled)
        o_feat = BoxHead(c.feat_dim, name="O_Head")(det_pooled)
        logits = (
            infer(spa, "relation_infer_spa")
            + infer(sem, "relation_infer_sem")
            + dense(c.num_predicates, name="sem_s")(s_feat)[:, si]
            + dense(c.num_predicates, name="sem_o")(o_feat)[:, oi]
        )
        # Official: the bias is indexed by the training pairs' GT labels and, at test time, by the
        # detector's labels (PredCls: GT labels throughout).
        use_gt = c.mode == "predcls" or train
        labels_for_bias = batch["labels"] if use_gt else jnp.argmax(det_logits, -1)
        table = self.param(
            "freq_bias", nn.initializers.zeros, (num_cls * num_cls, c.num_predicates)
        )
        if c.use_freq_bias:
            logits = logits + table[labels_for_bias[:, si] * num_cls + labels_for_bias[:, oi]]
        return logits

    # --------------------------------------------------------------------------------------------

    def features(self, batch, boxes):
        """(feat2d (B,H,W,C), feat3d (B,T,H,W,C3), detector box features (B,N,K), pooled)."""
        c = self.cfg
        if c.backbone == "precomputed":
            feat2d, feat3d = (
                batch["feat2d"].astype(self.dtype),
                batch["feat3d"].astype(self.dtype),
            )
            det_pooled = roi_align(feat2d, boxes, c.pool, c.spatial_scale, c.sampling_ratio)
            return feat2d, feat3d, batch["obj_feat"].astype(self.dtype), det_pooled
        if c.backbone == "resnet":
            return self.resnet_features(batch, boxes)
        if c.backbone != "small_cnn":
            raise ValueError(
                f"Unknown model.backbone {c.backbone!r}; expected small_cnn, precomputed, resnet."
            )
        frames = batch["frames"].astype(jnp.float32) / 127.5 - 1.0  # (B, T, H, W, 3)
        frames = frames.astype(self.dtype)
        key = frames[:, c.clip_len // 2]
        det_map = SmallBackbone(c.backbone_channels, name="det_body")(key)
        feat2d = SmallBackbone(c.backbone_channels, name="rel_body_2d")(key)
        feat3d = SmallBackbone(c.backbone_channels, temporal=True, name="rel_body_3d")(frames)
        det_pooled = roi_align(det_map, boxes, c.pool, c.spatial_scale, c.sampling_ratio)
        size = jnp.asarray(frames.shape[3:1:-1] * 2, jnp.float32)  # (W, H, W, H)
        geom = jnp.concatenate([boxes / size, (boxes[..., 2:] - boxes[..., :2]) / size[:2]], -1)
        geom = geom.astype(self.dtype)  # a network input; the boxes themselves stay float32
        det_feat = BoxHead(c.feat_dim, name="det_box_head")(det_pooled)
        det_feat = det_feat + dense(c.feat_dim, name="geom")(
            nn.relu(dense(c.feat_dim, name="geom0")(geom))
        )
        return feat2d, feat3d, det_feat, det_pooled

    def resnet_features(self, batch, boxes):
        """The official relation backbones on frames (paper presets; backbones.py).

        Key frame -> ResNet-50-DC5 (``rel_body_2d``); the whole clip, resized by
        ``temporal_scale`` (TEMPORAL_SCALES / detector scale), -> I3D-NL-R50-DC5
        (``rel_body_3d``). Both get Detectron's input (BGR minus PIXEL_MEANS), as in TRACE. The
        detector box features come precomputed (``obj_feat``: the frozen Faster R-CNN is out of
        scope); S/O heads read the 2D map, as in the ``precomputed`` path.
        """
        c = self.cfg
        x = batch["frames"].astype(jnp.float32)[..., ::-1] - jnp.asarray(
            backbones.PIXEL_MEANS_BGR, jnp.float32
        )
        stages, width = tuple(c.resnet_stages), c.resnet_width
        feat2d = resnet.resnet50_dc5(stage_sizes=stages, width=width, name="rel_body_2d")(
            x[:, c.clip_len // 2].astype(self.dtype)
        )
        ts = c.get("temporal_scale", 1.0)
        if ts != 1.0:
            b, t, h, w, ch = x.shape
            size = (b, t, round(h * ts), round(w * ts), ch)
            x = jax.image.resize(x, size, "bilinear", antialias=False)  # as cv2.resize
        x = x.astype(self.dtype)  # resized in float32 (input preprocessing), then cast
        feat3d = backbones.I3DResNet(stage_sizes=stages, width=width, name="rel_body_3d")(x)
        det_pooled = roi_align(feat2d, boxes, c.pool, c.spatial_scale, c.sampling_ratio)
        return feat2d, feat3d, batch["obj_feat"].astype(self.dtype), det_pooled

    def build_tree(self, boxes, num):
        c = self.cfg
        if c.context == "flat":
            return jax.vmap(lambda bx, nb: hrtree.flat_tree(nb, bx, self.m_pad, self.l_pad))(
                boxes, num
            )
        return jax.vmap(hrtree.build_tree)(boxes, num)

    def temporal_pool(self, boxes, feat3d):
        """RoIAlign of the (time-constant) boxes on every slice: (B, R, T, P, P, C3)."""
        c = self.cfg
        b, t = feat3d.shape[:2]
        f = feat3d.reshape((b * t,) + feat3d.shape[2:])
        scale = c.spatial_scale * (c.get("temporal_scale", 1.0) if c.backbone == "resnet" else 1.0)
        pooled = roi_align(f, jnp.repeat(boxes, t, axis=0), c.pool, scale, c.sampling_ratio)
        return jnp.swapaxes(pooled.reshape((b, t) + pooled.shape[1:]), 1, 2)

    def temporal(self, s, pooled, kind):
        """Temporal box head over the slices + attention with the key-frame query."""
        c = self.cfg
        if not c.temporal_fusion:
            return s
        if c.get("temporal_head", "mlp") == "avgpool_fc":
            # Official with I3D_DC5 (box_head3d.Tail_Layer_3D): average pool + Linear + ReLU.
            v = jnp.mean(pooled, axis=(-3, -2))
            o = nn.relu(dense(c.feat_dim, name=f"temporal_{kind}_fc")(v))
        else:  # the official non-BoxHead branch: flatten + Linear, ReLU, Linear
            o = BoxHead(c.feat_dim, name=f"temporal_{kind}_fc")(pooled)  # (B, R, T, K)
        return TemporalAttention(c.atten_dim, name=f"temporal_{kind}_atten")(s, o)

    def message_passing(self, x_nodes, tree):
        """Runs the grouped Tree-GRU on the flattened batch of trees; FFN = ReLU + Linear."""
        c = self.cfg
        b, m, comb = x_nodes.shape
        offs = (jnp.arange(b) * m)[:, None]
        parent = jnp.where(tree.parent >= 0, tree.parent + offs, -1).reshape(-1)
        level = jnp.where(tree.mask, tree.level, -1).reshape(-1)
        root = jnp.repeat(tree.num_levels, m)
        g = c.groups
        xg = x_nodes.reshape(b * m, g, comb // g).transpose(1, 0, 2)
        out = TreeGRU(c.hidden // g, comb // g, self.l_pad, name="tree_gru")(
            xg, parent, level, root
        )  # (G, B*M, comb/G)
        out = out.transpose(1, 0, 2).reshape(b, m, comb)
        return dense(comb, name="FFN")(nn.relu(out))


def build_model(config, dtype=jnp.float32) -> TRACE:
    """The relation model; its config is frozen so the module is hashable (jit static arg).

    ``dtype``: compute dtype (the train step's ``precision.compute_dtype(config.model)``);
    evaluation uses the default float32."""
    return TRACE(ml_collections.FrozenConfigDict(config.model), dtype)
