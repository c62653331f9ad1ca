import type { Command } from 'commander';
import { loadPipelineDocument } from '../../core/pipeline-file.js';
import { ValidationError } from '../../core/errors.js';
import { type ApiOptions, type CliContext } from '../context.js';
import { table } from '../render.js';
import { ApiError } from '../../api/client.js';

export function registerApply(program: Command, ctx: CliContext): void {
  program
    .command('apply')
    .description('create or update the modules of a pipeline file (YAML or JSON)')
    .requiredOption('-f, --file <path>', 'pipeline file')
    .option('--prune', 'delete modules the file no longer declares')
    .option('--json', 'print JSON')
    .action(async (options: ApiOptions & { file: string; prune?: boolean; json?: boolean }) => {
      const doc = loadPipelineDocument(options.file);
      let result;
      try {
        result = await ctx.clientFor(options).applyPipeline(doc, options.prune === true);
      } catch (err) {
        if (err instanceof ApiError && err.code === 'validation_failed') {
          throw new ValidationError(
            err.message.replace(/^invalid pipeline/, `invalid pipeline file ${options.file}`),
          );
        }
        throw err;
      }
      if (options.json === true) return ctx.printJson(result);
      ctx.print(
        table(
          ['MODULE', 'VERSION', 'CHANGE'],
          result.modules.map((m) => [m.name, String(m.version), m.change]),
        ),
      );
    });
}
