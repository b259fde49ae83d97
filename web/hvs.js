// HunyuanVideo Suite front-end helpers ("hvs.video_helpers").
//
// For node types whose id starts with "HVS":
//   * `frames` widgets snap to 4n+1, `width` / `height` widgets to multiples of 16, with a note
//     drawn on the node saying what was changed;
//   * nodes with a `text` / `prompt` widget show an approximate token count;
//   * sampler nodes show the latent token count and a rough peak-memory estimate, from their own
//     width/height/frames widgets or from the node feeding their latent input
//     (latent tokens = ((F-1)/4+1) * (H/16) * (W/16); see hvs_utils.js for the memory formula);
//   * saved videos / gifs in a node's execution result (`ui.videos`, `ui.gifs`) play inline.
// Works with the legacy litegraph front end of early 2024 and the Vue front end
// (comfyui-frontend-package; both provide ../../scripts/app.js and ../../scripts/api.js). The
// legacy front end gets the info texts drawn on the canvas; the Vue front end gets them in a small
// DOM widget, because its Vue node view draws no node canvas (and its node badges are a snapshot
// that does not follow edits), while a DOM widget shows in both of its views. Everything is
// defensive: a node without the expected widgets is left alone, and no handler throws into ComfyUI.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
	NODE_PREFIX, snapFrames, snap16, estimateTokens, latentTokens, estimateMemoryGB,
	formatCount, previewKind, viewQuery,
} from "./hvs_utils.js";

const EXT_NAME = "hvs.video_helpers";
const FRAME_WIDGETS = new Set(["frames", "num_frames", "video_length", "length"]);
const SIZE_WIDGETS = new Set(["width", "height"]);
const TEXT_WIDGETS = new Set(["text", "prompt"]);
const NOTE_LINE_H = 14;
const NOTE_COLOR = "#9fc9ff";
const WARN_COLOR = "#ffcc66";
const PREVIEW_WIDGET = "hvs_preview";
const INFO_WIDGET = "hvs_info";
const OWN_WIDGETS = new Set([PREVIEW_WIDGET, INFO_WIDGET]);
const INFO_REFRESH_MS = 400;

function safe(fn, fallback) {
	try {
		return fn();
	} catch (e) {
		console.warn(`[${EXT_NAME}]`, e);
		return fallback;
	}
}

const isHvsType = (name) => typeof name === "string" && name.startsWith(NODE_PREFIX);
const findWidget = (node, names) => (node?.widgets || []).find((w) => w && names.has(w.name));
const widgetsNamed = (node, names) => (node?.widgets || []).filter((w) => w && names.has(w.name));

function widgetOpt(w, key) {
	const o = w?.options || {};
	const v = o[key];
	return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/** The Vue front end (comfyui-frontend-package) knows the Vue node view setting; the 2024 one does not. */
const vueFrontend = () => typeof LiteGraph !== "undefined" && "vueNodesMode" in LiteGraph;

/** A widget's DOM element: `element` (DOM widgets of every front end); `inputEl` is deprecated
 * in the Vue front end and only read where `element` is missing. */
const widgetElement = (w) => w?.element || (w && !("element" in w) ? w.inputEl : undefined);

/** Whether input slot `i` has a link (`input.link` is deprecated in the Vue front end). */
function inputConnected(node, i) {
	if (typeof node.isInputConnected === "function") return node.isInputConnected(i);
	return node.inputs?.[i]?.link != null;
}

function state(node) {
	if (!node.__hvs) node.__hvs = { notes: {}, tokenCache: new Map() };
	return node.__hvs;
}

function requestRedraw(node) {
	safe(() => {
		node.setDirtyCanvas?.(true, true);
		node.graph?.setDirtyCanvas?.(true, true);
	});
}

// ---------------------------------------------------------------- snapping

function snapWidget(node, w, kind, reason, raw) {
	// `raw` is the value the user entered, before ComfyUI's own step rounding (which rounds
	// frames to multiples of 4 relative to 0, e.g. 49 -> 48, and is not what the VAE needs)
	const before = typeof raw === "number" && Number.isFinite(raw) ? raw : w.value;
	if (typeof before !== "number") return;
	const min = widgetOpt(w, "min");
	const max = widgetOpt(w, "max");
	const after = kind === "frames"
		? snapFrames(before, min ?? 1, max ?? Infinity)
		: snap16(before, min ?? 16, max ?? Infinity);
	const st = state(node);
	if (w.value !== after) w.value = after;
	if (after !== before) {
		st.notes[w.name] = kind === "frames"
			? `${w.name} ${before} → ${after} (4n+1)`
			: `${w.name} ${before} → ${after} (×16)`;
		requestRedraw(node);
	} else if (reason === "user") {
		delete st.notes[w.name];
	}
}

function hookSnapping(node) {
	for (const w of widgetsNamed(node, FRAME_WIDGETS)) wrapCallback(node, w, "frames");
	for (const w of widgetsNamed(node, SIZE_WIDGETS)) wrapCallback(node, w, "size");
}

function wrapCallback(node, w, kind) {
	if (w.__hvsWrapped) return;
	w.__hvsWrapped = true;
	const orig = w.callback;
	w.callback = function (...args) {
		let r;
		if (typeof orig === "function") r = orig.apply(this, args);
		safe(() => snapWidget(node, w, kind, "user", args[0]));
		return r;
	};
}

function snapAll(node, reason) {
	for (const w of widgetsNamed(node, FRAME_WIDGETS)) safe(() => snapWidget(node, w, "frames", reason));
	for (const w of widgetsNamed(node, SIZE_WIDGETS)) safe(() => snapWidget(node, w, "size", reason));
}

// ---------------------------------------------------------------- info lines

function tokenLine(node) {
	const w = findWidget(node, TEXT_WIDGETS);
	if (!w) return null;
	const text = typeof w.value === "string" ? w.value : (widgetElement(w)?.value ?? "");
	const cache = state(node).tokenCache;
	let n = cache.get(text);
	if (n === undefined) {
		n = estimateTokens(text);
		cache.clear();
		cache.set(text, n);
	}
	return { text: `≈ ${formatCount(n)} tokens`, color: n > 256 ? WARN_COLOR : NOTE_COLOR };
}

function numberWidgetValue(node, names) {
	const w = findWidget(node, names);
	return w && typeof w.value === "number" ? w.value : undefined;
}

/** width/height/frames of a node, or of the first node upstream that has all three. */
function videoDims(node, depth = 0, seen = new Set()) {
	if (!node || depth > 8 || seen.has(node.id)) return null;
	seen.add(node.id);
	const W = numberWidgetValue(node, new Set(["width"]));
	const H = numberWidgetValue(node, new Set(["height"]));
	const F = numberWidgetValue(node, FRAME_WIDGETS);
	if (W !== undefined && H !== undefined && F !== undefined) return { W, H, F };
	for (let i = 0; i < (node.inputs || []).length; i++) {
		if (!inputConnected(node, i)) continue;
		const up = safe(() => node.getInputNode?.(i), null);
		const r = videoDims(up, depth + 1, seen);
		if (r) return r;
	}
	return null;
}

function samplerLines(node) {
	if (!/sampler/i.test(node.comfyClass || node.type || "")) return [];
	const d = videoDims(node);
	if (!d) return [{ text: "memory: connect a video latent to estimate", color: NOTE_COLOR }];
	const tokens = latentTokens(d.W, d.H, d.F);
	if (tokens == null) return [];
	const gb = estimateMemoryGB(tokens);
	return [
		{ text: `${d.W}×${d.H}×${d.F}: ${formatCount(tokens)} latent tokens`, color: NOTE_COLOR },
		{ text: `est. peak ≈ ${gb.toFixed(0)} GB (13B bf16, no offload; fp8 ≈ −10 GB)`, color: gb > 80 ? WARN_COLOR : NOTE_COLOR },
	];
}

/** Lines drawn at the bottom of the node body (snap notes, sampler estimate). */
function infoLines(node) {
	const lines = [];
	for (const note of Object.values(state(node).notes)) lines.push({ text: note, color: WARN_COLOR });
	lines.push(...samplerLines(node));
	return lines;
}

function ensureRoom(node, nLines) {
	const st = state(node);
	if (st.lastLines === nLines) return;
	st.lastLines = nLines;
	safe(() => {
		const base = node.computeSize ? node.computeSize() : node.size;
		const want = base[1] + nLines * NOTE_LINE_H + 4;
		if (node.size && node.size[1] < want) {
			if (node.setSize) node.setSize([node.size[0], want]);
			else node.size[1] = want;
		}
	});
}

function drawInfo(node, ctx) {
	if (!ctx) return;
	if (vueFrontend()) {
		updateInfoWidget(node);
		return;
	}
	// the token count goes into the title bar: multiline text widgets fill the whole body
	const t = tokenLine(node);
	if (t) {
		const titleH = (typeof LiteGraph !== "undefined" && LiteGraph.NODE_TITLE_HEIGHT) || 30;
		ctx.save();
		ctx.font = "11px sans-serif";
		ctx.textAlign = "right";
		ctx.fillStyle = t.color;
		ctx.fillText(t.text, node.size[0] - 10, -titleH / 2 + 4);
		ctx.restore();
	}
	if (node.flags?.collapsed) return;
	const lines = infoLines(node);
	ensureRoom(node, lines.length);
	if (!lines.length) return;
	ctx.save();
	ctx.font = "11px sans-serif";
	ctx.textAlign = "left";
	let y = node.size[1] - 6 - (lines.length - 1) * NOTE_LINE_H;
	for (const l of lines) {
		ctx.fillStyle = l.color;
		ctx.fillText(l.text, 8, y);
		y += NOTE_LINE_H;
	}
	ctx.restore();
}

/** Vue front end: the info lines (token count first) as text of a DOM widget under the inputs,
 * added when a node first has something to say. */
function updateInfoWidget(node) {
	const lines = [tokenLine(node), ...(node.flags?.collapsed ? [] : infoLines(node))].filter(Boolean);
	const st = state(node);
	if (!st.infoEl) {
		if (!lines.length || typeof node.addDOMWidget !== "function") return;
		const el = document.createElement("div");
		el.className = "hvs-info";
		Object.assign(el.style, { font: "11px sans-serif", lineHeight: `${NOTE_LINE_H}px`, padding: "2px 6px",
			whiteSpace: "pre-wrap", pointerEvents: "none" });
		const w = node.addDOMWidget(INFO_WIDGET, "hvs_info", el, {
			serialize: false, hideOnZoom: false, getValue: () => undefined, setValue: () => {},
		});
		if (w) {
			w.serialize = false;
			w.serializeValue = () => undefined;
			w.computeSize = (width) => [width, Math.max(1, st.infoLines || 1) * NOTE_LINE_H + 6];
		}
		st.infoEl = el;
	}
	const key = lines.map((l) => `${l.color}|${l.text}`).join("\n");
	if (st.infoKey === key) return;
	st.infoKey = key;
	st.infoLines = lines.length;
	st.infoEl.replaceChildren(...lines.map((l) => {
		const row = document.createElement("div");
		row.textContent = l.text;
		row.style.color = l.color;
		return row;
	}));
	requestRedraw(node);
}

let infoTimer = null;

/** The Vue node view calls no draw hook: refresh the info widgets of all HVS nodes on a timer. */
function startInfoRefresh() {
	if (infoTimer !== null || !vueFrontend()) return;
	infoTimer = setInterval(() => safe(() => {
		for (const node of app.graph?._nodes || []) {
			if (isHvsType(node?.comfyClass || node?.type)) safe(() => updateInfoWidget(node));
		}
	}), INFO_REFRESH_MS);
}

// ---------------------------------------------------------------- previews

function showPreviews(node, output) {
	const items = [...(output?.videos || []), ...(output?.gifs || [])].filter((x) => x && x.filename);
	if (!items.length) return;
	const st = state(node);
	if (!st.previewEl) {
		const el = document.createElement("div");
		el.className = "hvs-preview";
		Object.assign(el.style, { display: "flex", flexDirection: "column", gap: "4px", width: "100%" });
		st.previewEl = el;
		if (typeof node.addDOMWidget === "function") {
			const w = node.addDOMWidget(PREVIEW_WIDGET, "hvs_preview", el, {
				serialize: false,
				hideOnZoom: false,
				getValue: () => undefined,
				setValue: () => {},
			});
			if (w) {
				w.serialize = false;
				w.serializeValue = () => undefined;
				w.computeSize = (width) => [width, Math.max(120, (el.scrollHeight || 0) + 10)];
			}
		} else {
			// no DOM widgets in this front end: float the preview over the page
			document.body.appendChild(el);
		}
	}
	const el = st.previewEl;
	el.replaceChildren();
	for (const item of items) {
		const url = api.apiURL(viewQuery(item));
		let media;
		if (previewKind(item) === "video") {
			media = document.createElement("video");
			Object.assign(media, { autoplay: true, loop: true, muted: true, controls: true, playsInline: true });
		} else {
			media = document.createElement("img");
		}
		media.src = url;
		media.dataset.hvsPreview = item.filename;
		Object.assign(media.style, { width: "100%", maxHeight: "512px", objectFit: "contain" });
		media.addEventListener?.("loadedmetadata", () => requestRedraw(node));
		media.addEventListener?.("load", () => requestRedraw(node));
		el.appendChild(media);
	}
	safe(() => {
		const sz = node.computeSize?.();
		if (sz && node.size[1] < sz[1] + 160) node.setSize?.([Math.max(node.size[0], 260), sz[1] + 160]);
	});
	requestRedraw(node);
}

/** Keep our own widgets (preview, info) out of saved widgets_values (they are not inputs). */
function stripOwnWidgetsFromSerialized(node, o) {
	if (!Array.isArray(o?.widgets_values)) return;
	const widgets = node.widgets || [];
	for (let idx = widgets.length - 1; idx >= 0; idx--) {
		if (OWN_WIDGETS.has(widgets[idx]?.name) && o.widgets_values.length > idx) o.widgets_values.splice(idx, 1);
	}
}

// ---------------------------------------------------------------- audio upload

/** Our Load Audio declares `audio_upload` like core's. The new front end then gives it an upload button
 * whose code updates an `audioUI` player widget, which the front end adds only to core's audio nodes (by
 * class name): without it the button's set-up throws and the node is not created. Declare the player
 * before the button, as core's nodes get it. Front ends without the player widget are left alone. */
function addAudioPlayerInput(nodeData) {
	const required = nodeData?.input?.required;
	if (!required?.audio?.[1]?.audio_upload || required.audioUI) return;
	if (!(app.extensions || []).some((e) => e?.name === "Comfy.AudioWidget")) return;
	// re-insert in place (others may hold this object): ..., audio, audioUI, [upload], ...
	const entries = Object.entries(required);
	for (const [name] of entries) delete required[name];
	for (const [name, spec] of entries) {
		required[name] = spec;
		if (name === "audio") required.audioUI = ["AUDIO_UI", {}];
	}
}

// ---------------------------------------------------------------- registration

function chain(proto, name, fn) {
	const orig = proto[name];
	proto[name] = function (...args) {
		const r = typeof orig === "function" ? orig.apply(this, args) : undefined;
		safe(() => fn.apply(this, args));
		return r;
	};
}

function setupNode(node) {
	if (!node || state(node).setup) return;
	state(node).setup = true;
	hookSnapping(node);
	const ti = widgetElement(findWidget(node, TEXT_WIDGETS));
	ti?.addEventListener?.("input", () => requestRedraw(node));
	if (vueFrontend()) {
		updateInfoWidget(node);
		startInfoRefresh();
	}
}

export const hvsExtension = {
	name: EXT_NAME,

	async beforeRegisterNodeDef(nodeType, nodeData) {
		safe(() => {
			if (!isHvsType(nodeData?.name)) return;
			addAudioPlayerInput(nodeData);
			const proto = nodeType.prototype;
			chain(proto, "onNodeCreated", function () { setupNode(this); });
			chain(proto, "onConfigure", function () { setupNode(this); snapAll(this, "load"); });
			chain(proto, "onDrawForeground", function (ctx) { drawInfo(this, ctx); });
			chain(proto, "onExecuted", function (output) { showPreviews(this, output); });
			chain(proto, "onSerialize", function (o) { stripOwnWidgetsFromSerialized(this, o); });
			// all info texts of the node (title-bar token count + body lines), for tests and tooltips
			proto.hvsInfoLines = function () {
				return safe(() => [tokenLine(this), ...infoLines(this)].filter(Boolean).map((l) => l.text), []);
			};
		});
	},

	nodeCreated(node) {
		safe(() => {
			if (isHvsType(node?.comfyClass || node?.type)) setupNode(node);
		});
	},

	loadedGraphNode(node) {
		safe(() => {
			if (isHvsType(node?.comfyClass || node?.type)) {
				setupNode(node);
				snapAll(node, "load");
			}
		});
	},
};

app.registerExtension(hvsExtension);
