import { app } from "../../scripts/app.js";
app.registerExtension({ name: "hvs.video_helpers" });
