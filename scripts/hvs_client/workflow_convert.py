"""UI-format workflow (what the front end saves) -> API-format prompt, with ``/object_info``.

``ui_to_api`` does what the front end's ``graphToPrompt`` does; ``is_api_format`` tells the two
formats apart. Pure functions on JSON data: no network, no third-party imports.
"""
from __future__ import annotations

import itertools
from typing import Any

from .errors import WorkflowError

__all__ = ["ui_to_api", "is_api_format", "MalformedNodeInfo"]

VIRTUAL_NODE_TYPES = {"Reroute", "PrimitiveNode", "Note", "MarkdownNote"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize", "increment-wrap"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
MODE_MUTED, MODE_BYPASS = 2, 4



class MalformedNodeInfo(ValueError):
    """A ``/object_info`` entry the workflow needs is not shaped like ComfyUI's node definitions."""


def is_api_format(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and all(
        isinstance(v, dict) and "class_type" in v for v in data.values())


def _input_spec(class_type: str, object_info_entry: Any) -> list[tuple[str, list, str]]:
    """[(name, spec, section)] in widget-creation order (required first, then optional)."""
    def malformed(found: str) -> MalformedNodeInfo:
        return MalformedNodeInfo(f"the server's /object_info entry for {class_type!r} is not a node definition: "
                                 f"{found}")

    if not isinstance(object_info_entry, dict):
        raise malformed(f"expected an object, found {type(object_info_entry).__name__}")
    inp = object_info_entry.get("input") or {}
    order = object_info_entry.get("input_order") or {}  # newer servers give the order explicitly
    if not isinstance(inp, dict) or not isinstance(order, dict):
        raise malformed("'input' or 'input_order' is not an object")
    specs: list[tuple[str, list, str]] = []
    for section in ("required", "optional"):
        sec = inp.get(section) or {}
        names = order.get(section) or list(sec)
        if not isinstance(sec, dict) or not isinstance(names, list):
            raise malformed(f"input section {section!r} is not an object with a list of names")
        for name in names:
            if not isinstance(name, str):
                raise malformed(f"input name {name!r} is not a string")
            if name in sec:
                spec = sec[name]
                spec = list(spec) if isinstance(spec, (list, tuple)) else [spec]
                if not spec or not isinstance(spec[0], (str, list)):
                    raise malformed(f"input {name!r} has no type name or list of choices: {sec[name]!r}")
                specs.append((name, spec, section))
    return specs


def _has_control(name: str, spec: list) -> bool:
    """Whether the front end puts a control_after_generate combo after this widget."""
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return bool(opts.get("control_after_generate")) or (spec[0] == "INT" and name in ("seed", "noise_seed"))


def _widget_layouts(specs: list[tuple[str, list, str]]):
    """Yield candidate widget layouts, most likely first.

    A layout is a list of (input_name or None, kind); ``kind`` is "value" (an API input),
    "control" (the control_after_generate combo after a seed input), "filter" (the filter text
    of a combo with control_after_generate) or "button" (the image-upload button, which the
    old front end adds after the required inputs). Front ends differ in whether forceInput
    widgets, control combos and upload buttons occupy a widgets_values slot, so every
    combination is offered and the caller picks the one that matches the saved values."""
    for force_slot, control_slot, button_slot in itertools.product((True, False), repeat=3):
        layout: list[tuple[str | None, str]] = []
        want_button = False
        for idx, (name, spec, section) in enumerate(specs):
            typ = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            kind = "COMBO" if isinstance(typ, list) else typ
            if kind == "IMAGEUPLOAD":
                if button_slot:
                    layout.append((None, "button"))
            elif kind in WIDGET_TYPES and not (opts.get("forceInput") and not force_slot):
                layout.append((name, "value"))
                if _has_control(name, spec) and control_slot:
                    layout.append((None, "control"))
                    if kind == "COMBO":
                        layout.append((None, "filter"))
                if kind == "COMBO" and opts.get("image_upload"):
                    want_button = True
            last_required = section == "required" and (idx + 1 == len(specs) or specs[idx + 1][2] != "required")
            if last_required and want_button and button_slot:
                layout.append((None, "button"))
                want_button = False
        yield layout


def _map_widgets(class_type: str, values: Any, specs: list[tuple[str, list, str]]) -> dict[str, Any]:
    """widgets_values of one node -> {input name: value}."""
    spec_names = {n for n, _, _ in specs}
    if isinstance(values, dict):  # some front ends / packs save a dict keyed by widget name
        return {k: v for k, v in values.items() if k in spec_names}
    values = list(values or [])
    layouts = list(_widget_layouts(specs))
    controlled = {n for n, spec, _ in specs if _has_control(n, spec)}

    def consistent(layout) -> bool:
        """Control slots hold control values, and a layout without them does not read a saved
        control value (the slot after a seed) as the next input's value."""
        for i, (name, kind) in enumerate(layout[: len(values)]):
            if kind == "control" and values[i] not in CONTROL_VALUES:
                return False
            if kind == "value" and name in controlled and (i + 1 >= len(layout) or layout[i + 1][1] != "control") \
                    and i + 1 < len(values) and values[i + 1] in CONTROL_VALUES:
                return False
        return True

    ok = [lay for lay in layouts if consistent(lay)] or layouts
    chosen = next((lay for lay in ok if len(lay) == len(values)), None)
    if chosen is None:  # extra trailing values (front-end-only widgets): longest layout that fits
        shorter = [lay for lay in ok if len(lay) < len(values)]
        # else fewer values than widgets: saved before trailing widgets were added (they get defaults)
        chosen = max(shorter, key=len) if shorter else min(ok, key=len)
    defaults = {n: spec[1]["default"] for n, spec, _ in specs if len(spec) > 1 and isinstance(spec[1], dict)
                and "default" in spec[1]}
    out: dict[str, Any] = {}
    for i, (name, kind) in enumerate(chosen):
        if kind == "value" and name is not None:
            if i < len(values):
                out[name] = values[i]
            elif name in defaults:
                out[name] = defaults[name]
    return out


def _links_table(workflow: dict) -> dict[int, tuple]:
    table = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            table[int(link["id"])] = (link["origin_id"], link["origin_slot"], link["target_id"],
                                      link["target_slot"], link.get("type"))
        elif link:
            lid, o_id, o_slot, t_id, t_slot = link[:5]
            table[int(lid)] = (o_id, o_slot, t_id, t_slot, link[5] if len(link) > 5 else None)
    return table


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to an API-format prompt, as the front end's
    ``graphToPrompt`` does: virtual nodes (Reroute, PrimitiveNode, Note) are resolved and
    dropped, muted (mode 2) and bypassed (mode 4) nodes are dropped, links through a bypassed
    node are routed to its first input of the same type, PrimitiveNode values are written into
    the widget they drive, and widgets_values are mapped to input names with the node
    definitions from ``/object_info``. Seed values are used as saved (no re-randomising)."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        raise WorkflowError("not a UI-format workflow (no 'nodes' list)")
    if (workflow.get("definitions") or {}).get("subgraphs"):
        raise WorkflowError("workflows with subgraphs are not supported by this converter")
    nodes = {int(n["id"]): n for n in workflow["nodes"]}
    links = _links_table(workflow)

    missing = sorted({n.get("type") for n in nodes.values()
                      if n.get("type") not in object_info and n.get("type") not in VIRTUAL_NODE_TYPES
                      and n.get("mode", 0) not in (MODE_MUTED, MODE_BYPASS)})
    if missing:
        raise WorkflowError("missing node types (not known to the server): " + ", ".join(missing))

    def input_link(node: dict, slot: int):
        inputs = node.get("inputs") or []
        if slot >= len(inputs):
            return None
        lid = inputs[slot].get("link")
        return links.get(int(lid)) if lid is not None else None

    def resolve(link, want_type):
        """Follow a link back through Reroutes and bypassed nodes.
        Returns ("link", origin_id, slot), ("value", v) for a PrimitiveNode, or None."""
        seen = set()
        while link is not None:
            o_id, o_slot = int(link[0]), int(link[1])
            if (o_id, o_slot) in seen:
                return None
            seen.add((o_id, o_slot))
            parent = nodes.get(o_id)
            if parent is None:
                return None
            ptype = parent.get("type")
            if ptype == "PrimitiveNode":
                vals = parent.get("widgets_values") or []
                return ("value", vals[0]) if vals else None
            if ptype == "Reroute":
                link = input_link(parent, 0)
                continue
            if ptype in VIRTUAL_NODE_TYPES:
                return None
            if parent.get("mode", 0) == MODE_BYPASS:
                p_inputs = parent.get("inputs") or []
                order = [o_slot] + list(range(len(p_inputs)))
                nxt = None
                for s in order:
                    if s < len(p_inputs) and p_inputs[s].get("type") == want_type:
                        nxt = input_link(parent, s)
                        break
                link = nxt
                continue
            if parent.get("mode", 0) == MODE_MUTED:
                return None
            return ("link", str(o_id), o_slot)
        return None

    prompt: dict[str, dict] = {}
    for nid in sorted(nodes):
        node = nodes[nid]
        ctype = node.get("type")
        if ctype in VIRTUAL_NODE_TYPES or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASS):
            continue
        specs = _input_spec(ctype, object_info[ctype])
        inputs = _map_widgets(ctype, node.get("widgets_values"), specs)
        for slot, inp in enumerate(node.get("inputs") or []):
            if inp.get("link") is None:
                continue
            r = resolve(input_link(node, slot), inp.get("type"))
            name = inp.get("name")
            if (inp.get("widget") or {}).get("name"):
                name = inp["widget"]["name"]
            if r is None:
                continue
            if r[0] == "value":
                inputs[name] = r[1]
            else:
                inputs[name] = [r[1], r[2]]
        entry = {"class_type": ctype, "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        prompt[str(nid)] = entry

    # links that ended on dropped (muted) nodes are removed, as the front end does
    for entry in prompt.values():
        for k in [k for k, v in entry["inputs"].items()
                  if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and v[0] not in prompt]:
            del entry["inputs"][k]
    return prompt


