import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'models/', '.cache/', 'flows/lib/', 'flows/examples/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // the Node-RED nodes: CommonJS (Node-RED 4 loads nodes with require()), type-checked
    // through JSDoc by flows/tsconfig.json
    files: ['flows/nodes/*.js'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-require-imports': 'off',
      '@typescript-eslint/no-this-alias': 'off', // `const node = this`, the Node-RED idiom
    },
  },
  {
    // No promise may reject unobserved: every promise is awaited, or handed to a
    // .catch / background(); none is passed where a callback's result is ignored.
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: false }],
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
);
