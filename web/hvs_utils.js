// Pure helpers for the HunyuanVideo Suite front-end extension (no DOM, no ComfyUI imports), so
// they can be unit-tested in the page. ComfyUI loads every .js file of WEB_DIRECTORY; this one
// only exports functions and registers nothing.

export const NODE_PREFIX = "HVS";

/** Frame counts the causal 3D VAE accepts: 4n+1 (1, 5, 9, ..., 49, ..., 129). */
export function snapFrames(value, min = 1, max = Infinity) {
	const v = Number(value);
	if (!Number.isFinite(v)) return value;
	let n = Math.max(0, Math.round((v - 1) / 4));
	let out = 4 * n + 1;
	while (out < min) out += 4;
	while (out > max && out - 4 >= 1) out -= 4;
	return out;
}

/** Pixel sizes: multiples of 16 (8x VAE downsampling times the 2x2 patch of the DiT). */
export function snap16(value, min = 16, max = Infinity) {
	const v = Number(value);
	if (!Number.isFinite(v)) return value;
	let out = Math.max(16, Math.round(v / 16) * 16);
	while (out < min) out += 16;
	while (out > max && out - 16 >= 16) out -= 16;
	return out;
}

/**
 * Rough token count of a prompt for BPE tokenizers (LLaMA / CLIP): every run of letters costs
 * about one token per 6 characters (at least one), every digit and punctuation mark one token.
 * English prose comes out at ~1.2-1.4 tokens per word, close to the real tokenizers.
 */
export function estimateTokens(text) {
	if (typeof text !== "string" || !text) return 0;
	const pieces = text.match(/[\p{L}\p{M}]+|\p{N}|[^\s\p{L}\p{M}\p{N}]/gu) || [];
	let n = 0;
	for (const p of pieces) n += /^[\p{L}\p{M}]/u.test(p) ? Math.max(1, Math.ceil(p.length / 6)) : 1;
	return n;
}

/**
 * Video tokens the DiT attends over: the VAE compresses time 4x (causal: first frame alone) and
 * space 8x, the patch embedding folds 2x2 latent pixels, so
 *     latent tokens = ((F - 1) / 4 + 1) * (H / 16) * (W / 16)
 * e.g. 1280x720x129 -> 33 * 45 * 80 = 118,800 tokens.
 */
export function latentTokens(width, height, frames) {
	const W = Number(width), H = Number(height), F = Number(frames);
	if (![W, H, F].every(Number.isFinite) || W <= 0 || H <= 0 || F <= 0) return null;
	return (Math.floor((F - 1) / 4) + 1) * Math.floor(H / 16) * Math.floor(W / 16);
}

/**
 * Very rough peak memory (GB) of sampling with the 13B HunyuanVideo DiT and no block offload:
 *     GB ~= weights + tokens * 0.29 MB
 * weights: ~25.6 GB in bf16, ~13 GB in fp8. The 0.29 MB per video token (activations of one
 * block at hidden size 3072: qkv, attention output, 4x MLP, modulation, in bf16, plus workspace)
 * is fitted to the official figures (1280x720x129 ~ 60 GB, 960x544x129 ~ 45 GB). Tiny/toy
 * models need far less; treat the number as an order of magnitude for the real model.
 */
export function estimateMemoryGB(tokens, { weightsGB = 25.6, perTokenMB = 0.29 } = {}) {
	if (tokens == null) return null;
	return weightsGB + (tokens * perTokenMB) / 1024;
}

export function formatCount(n) {
	return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

const VIDEO_EXT = /\.(mp4|webm|mov|mkv|m4v)$/i;

/** <video> for video files, <img> for gif/webp/png previews. */
export function previewKind(item) {
	const name = String(item?.filename || "");
	const fmt = String(item?.format || "");
	if (fmt.startsWith("video/") || VIDEO_EXT.test(name)) return "video";
	return "img";
}

/** Query string of ComfyUI's /view endpoint for one saved-output entry. */
export function viewQuery(item) {
	const p = new URLSearchParams({
		filename: String(item?.filename ?? ""),
		subfolder: String(item?.subfolder ?? ""),
		type: String(item?.type ?? "output"),
	});
	if (item?.format) p.set("format", String(item.format));
	return "/view?" + p.toString();
}
