// Downloads with @huggingface/hub, unmodified, from the endpoint given:
//   node hf-download.mjs HUB_URL REPO REVISION CACHE_DIR          a snapshot
//   node hf-download.mjs HUB_URL REPO REVISION OUT_FILE PATH     one file
// It lives beside the node_modules npm installed (tests/ui). Prints one JSON
// line with the snapshot folder or the file; any error exits non-zero.
import { writeFile } from "node:fs/promises";
import { downloadFile, snapshotDownload } from "@huggingface/hub";

const [hubUrl, repo, revision, out, path] = process.argv.slice(2);
try {
	if (path) {
		const blob = await downloadFile({ repo, path, revision, hubUrl });
		await writeFile(out, Buffer.from(await blob.arrayBuffer()));
		console.log(JSON.stringify({ file: out }));
	} else {
		const snapshot = await snapshotDownload({ repo, revision, cacheDir: out, hubUrl });
		console.log(JSON.stringify({ snapshot }));
	}
} catch (err) {
	console.error(String(err && err.stack ? err.stack : err));
	process.exit(1);
}
