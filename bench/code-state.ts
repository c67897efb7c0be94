import { execFileSync } from 'node:child_process';

/**
 * The code a bench or eval measured: the commit, and how many tracked files differ from it
 * (figures of a dirty tree are not the commit's). `repoDir` is the repository's root.
 */
export function codeState(repoDir: string): string {
  try {
    const git = (...args: string[]): string => execFileSync('git', args, { cwd: repoDir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const head = git('rev-parse', '--short', 'HEAD');
    const dirty = git('status', '--porcelain', '--untracked-files=no').split('\n').filter((l) => l !== '').length;
    return dirty ? `commit ${head} plus uncommitted changes to ${dirty} tracked files` : `commit ${head}`;
  } catch {
    return 'commit unknown (no git)';
  }
}
