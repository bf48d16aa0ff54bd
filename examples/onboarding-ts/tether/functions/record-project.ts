// Keeps the project directory up to date when users create projects.

import { NonRetriableError } from "@tether/sdk";

import * as services from "../../services.js";
import { tether } from "../client.js";

export const recordProject = tether.createFunction(
  { id: "record-project", event: "app/project.created" },
  async ({ event, step }) => {
    const userId = event.data.user_id;
    if (!Number.isInteger(userId)) {
      throw new NonRetriableError("app/project.created needs data.user_id (an integer)");
    }
    await step.run("add-to-directory", () => {
      services.projects.add(userId);
    });
  },
);
