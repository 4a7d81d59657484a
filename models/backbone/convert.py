#!/usr/bin/env python3
"""Converts the TF.js graph model of ssdlite_mobilenet_v2_coco (model.json + shards) into
the project's weight file (models/FORMAT.md).

    convert.py MODEL_DIR OUT.csw

Plain python3 standard library. Every tensor is stored float32, in the layout the C code
(engine/cnn.c) uses, under names of our own:

  mnv2/conv0/w           [3,3,3,32]   first 3x3 stride-2 conv, HWIO, batch norm folded
  mnv2/conv0/b           [32]
  mnv2/block{0..16}/...  the 17 inverted-residual blocks (graph: expanded_conv, _1.._16)
      expand/w [Cin,Cexp], expand/b       1x1 expansion (absent in block 0)
      dw/w [3,3,Cexp], dw/b [Cexp]        depthwise 3x3, batch norm scale folded into w
      project/w [Cexp,Cout], project/b    1x1 linear projection
  mnv2/conv1/w [320,1280], mnv2/conv1/b   final 1x1 conv (graph: Conv_1)
  extra/{2..5}/reduce/w [Cin,Cmid], reduce/b     SSDLite extra layer 1x1
  extra/{2..5}/dw/w [3,3,Cmid], dw/b             depthwise 3x3 stride 2
  extra/{2..5}/expand/w [Cmid,Cout], expand/b    1x1
  head/{0..5}/{box,cls}/dw/w [3,3,C], dw/b       predictor depthwise 3x3 (+ReLU6)
  head/{0..5}/{box,cls}/pw/w [C,A*4 or A*91], pw/b   predictor 1x1 (linear)
  postprocess/anchors    [1917,4]     the graph's anchors (ymin,xmin,ymax,xmax), used by
                                      the tests to check the C anchor generator
  postprocess/box_scales [4]          box coder scales (y, x, h, w), from the graph

Folding: the graph computes depthwise(x, w) * mul + sub (and, in the predictors,
FusedBatchNorm with epsilon 0.001). Both are per-channel affine maps after a per-channel
linear op, so w' = w * scale and b' = shift give the same function in one pass.
"""
import array
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import csw  # noqa: E402

FE = "FeatureExtractor/MobilenetV2/"
BN_EPSILON = 0.001  # FusedBatchNorm attr in the predictors (checked below)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: convert.py MODEL_DIR OUT.csw")
    model_dir, out_path = sys.argv[1], sys.argv[2]
    graph, consts = load_graph(model_dir)
    check_graph(graph)
    tensors = []

    def put(name, dims, values):
        values = array.array("f", values)
        if len(values) != math.prod(dims):
            raise SystemExit(f"convert: {name}: {len(values)} values for {dims}")
        if sys.byteorder != "little":
            values.byteswap()
        tensors.append((name, "float32", list(dims), values.tobytes()))

    def get(name, shape):
        if name not in consts:
            raise SystemExit(f"convert: tensor {name} missing from model.json")
        got_shape, values = consts[name]
        if list(got_shape) != list(shape):
            raise SystemExit(f"convert: {name}: shape {got_shape}, expected {shape}")
        return values

    def pointwise(out, graph_prefix, cin, cout):
        put(out + "/w", [cin, cout], get(graph_prefix + "/Conv2D/merged_input", [1, 1, cin, cout]))
        put(out + "/b", [cout], get(graph_prefix + "/BatchNorm/batchnorm/sub", [cout]))

    def depthwise(out, graph_prefix, c):
        w = get(graph_prefix + "/depthwise_weights", [3, 3, c, 1])
        mul = get(graph_prefix + "/BatchNorm/batchnorm/mul", [c])
        put(out + "/w", [3, 3, c], [w[i] * mul[i % c] for i in range(9 * c)])
        put(out + "/b", [c], get(graph_prefix + "/BatchNorm/batchnorm/sub", [c]))

    # MobileNetV2 backbone.
    put("mnv2/conv0/w", [3, 3, 3, 32], get(FE + "Conv/Conv2D/merged_input", [3, 3, 3, 32]))
    put("mnv2/conv0/b", [32], get(FE + "Conv/BatchNorm/batchnorm/sub", [32]))
    cin = 32
    for i, (expansion, cout, _stride) in enumerate(MOBILENET_V2_BLOCKS):
        g = FE + ("expanded_conv" if i == 0 else f"expanded_conv_{i}")
        cexp = cin * expansion
        if expansion != 1:
            pointwise(f"mnv2/block{i}/expand", g + "/expand", cin, cexp)
        depthwise(f"mnv2/block{i}/dw", g + "/depthwise", cexp)
        pointwise(f"mnv2/block{i}/project", g + "/project", cexp, cout)
        cin = cout
    pointwise("mnv2/conv1", FE + "Conv_1", 320, 1280)

    # SSDLite extra feature layers.
    cin = 1280
    for k, (cmid, cout) in zip(range(2, 6), EXTRA_LAYERS):
        pointwise(f"extra/{k}/reduce", FE + f"layer_19_1_Conv2d_{k}_1x1_{cmid}", cin, cmid)
        depthwise(f"extra/{k}/dw", FE + f"layer_19_2_Conv2d_{k}_3x3_s2_{cout}_depthwise", cmid)
        pointwise(f"extra/{k}/expand", FE + f"layer_19_2_Conv2d_{k}_3x3_s2_{cout}", cmid, cout)
        cin = cout

    # Box predictors: one per feature map, separate box and class towers.
    for k, (c, anchors) in enumerate(HEADS):
        for ours, theirs, per_anchor in (("box", "BoxEncodingPredictor", 4),
                                         ("cls", "ClassPredictor", 91)):
            g = f"BoxPredictor_{k}/{theirs}"
            w = get(g + "_depthwise/depthwise_weights", [3, 3, c, 1])
            gamma = get(g + "_depthwise/BatchNorm/gamma", [c])
            beta = get(g + "_depthwise/BatchNorm/beta", [c])
            mean = get(g + "_depthwise/BatchNorm/moving_mean", [c])
            var = get(g + "_depthwise/BatchNorm/moving_variance", [c])
            scale = [gamma[j] / math.sqrt(var[j] + BN_EPSILON) for j in range(c)]
            put(f"head/{k}/{ours}/dw/w", [3, 3, c], [w[i] * scale[i % c] for i in range(9 * c)])
            put(f"head/{k}/{ours}/dw/b", [c], [beta[j] - mean[j] * scale[j] for j in range(c)])
            n = anchors * per_anchor
            put(f"head/{k}/{ours}/pw/w", [c, n], get(g + "/weights", [1, 1, c, n]))
            put(f"head/{k}/{ours}/pw/b", [n], get(g + "/biases", [n]))

    # Post-processing constants.
    put("postprocess/anchors", [1917, 4], get("Postprocessor/ExpandDims", [1, 1917, 4]))
    yx = 1.0 / get("ConstantFolding/Postprocessor/Decode/div_recip", [])[0]
    hw = 1.0 / get("ConstantFolding/Postprocessor/Decode/div_2_recip", [])[0]
    put("postprocess/box_scales", [4], [round(yx, 4), round(yx, 4), round(hw, 4), round(hw, 4)])

    tmp = out_path + ".tmp"
    csw.write(tmp, tensors)
    os.replace(tmp, out_path)
    print(f"convert: wrote {len(tensors)} tensors to {out_path}")


# (expansion factor, output channels, stride) of expanded_conv, expanded_conv_1, ... _16.
MOBILENET_V2_BLOCKS = (
    [(1, 16, 1)]
    + [(6, 24, 2), (6, 24, 1)]
    + [(6, 32, 2)] + [(6, 32, 1)] * 2
    + [(6, 64, 2)] + [(6, 64, 1)] * 3
    + [(6, 96, 1)] * 3
    + [(6, 160, 2)] + [(6, 160, 1)] * 2
    + [(6, 320, 1)]
)
# (1x1 reduce channels, output channels) of the extra layers 2..5.
EXTRA_LAYERS = [(256, 512), (128, 256), (128, 256), (64, 128)]
# (channels, anchors per cell) of the six predictor inputs.
HEADS = [(576, 3), (1280, 6), (512, 6), (256, 6), (256, 6), (128, 6)]


def load_graph(model_dir):
    with open(os.path.join(model_dir, "model.json")) as f:
        model = json.load(f)
    consts = {}
    for group in model["weightsManifest"]:
        blob = b""
        for shard in group["paths"]:
            with open(os.path.join(model_dir, shard), "rb") as f:
                blob += f.read()
        at = 0
        for w in group["weights"]:
            if "quantization" in w:
                raise SystemExit(f"convert: {w['name']} is quantised; expected float32 weights")
            typecode = {"float32": "f", "int32": "i"}.get(w["dtype"])
            if typecode is None:
                raise SystemExit(f"convert: {w['name']}: unexpected dtype {w['dtype']}")
            count = math.prod(w["shape"])
            values = array.array(typecode)
            values.frombytes(blob[at : at + 4 * count])
            if sys.byteorder != "little":
                values.byteswap()
            at += 4 * count
            consts[w["name"]] = (w["shape"], values)
        if at != len(blob):
            raise SystemExit(f"convert: shards hold {len(blob)} bytes, manifest {at}")
    return model["modelTopology"]["node"], consts


def check_graph(nodes):
    """The C code hard-codes the architecture; refuse a graph that differs where it matters."""
    by_name = {n["name"]: n for n in nodes}
    for n in nodes:
        if n["op"] == "FusedBatchNorm":
            eps = n["attr"]["epsilon"]["f"]
            if abs(eps - BN_EPSILON) > 1e-9:
                raise SystemExit(f"convert: {n['name']}: epsilon {eps}, expected {BN_EPSILON}")
        if n["op"] == "ResizeBilinear" and n["attr"].get("align_corners", {}).get("b", False):
            raise SystemExit("convert: ResizeBilinear with align_corners; C code assumes not")
    first = by_name["BoxPredictor_0/BoxEncodingPredictor_depthwise/depthwise"]["input"][0]
    if first != FE + "expanded_conv_13/expand/Relu6":
        raise SystemExit(f"convert: first feature map is {first}, expected expanded_conv_13")


if __name__ == "__main__":
    main()
