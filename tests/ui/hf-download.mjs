// Downloads a model with @huggingface/hub, unmodified, from the endpoint given:
//   node hf-download.mjs HUB_URL REPO REVISION CACHE_DIR
// It lives beside the node_modules npm installed (tests/ui). Prints one JSON line
// with the snapshot folder; any error exits non-zero with its message.
import { snapshotDownload } from "@huggingface/hub";

const [hubUrl, repo, revision, cacheDir] = process.argv.slice(2);
try {
	const snapshot = await snapshotDownload({ repo, revision, cacheDir, hubUrl });
	console.log(JSON.stringify({ snapshot }));
} catch (err) {
	console.error(String(err && err.stack ? err.stack : err));
	process.exit(1);
}
