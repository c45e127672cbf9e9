// A CUDA kernel that must really run on the GPU: adds two vectors of 16M
// floats on the device and checks every element on the host. Built with
// nvcc by integration/gpu/prove.sh where nvcc exists.
#include <cstdio>
#include <vector>

__global__ void add(const float *a, const float *b, float *c, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        c[i] = a[i] + b[i];
}

int main()
{
    const int n = 1 << 24;
    std::vector<float> a(n), b(n), c(n);
    for (int i = 0; i < n; i++) {
        a[i] = float(i);
        b[i] = float(2 * i);
    }
    float *da, *db, *dc;
    if (cudaMalloc(&da, n * sizeof(float)) != cudaSuccess ||
        cudaMalloc(&db, n * sizeof(float)) != cudaSuccess ||
        cudaMalloc(&dc, n * sizeof(float)) != cudaSuccess) {
        printf("vecadd: cudaMalloc: %s\n", cudaGetErrorString(cudaGetLastError()));
        return 2;
    }
    cudaMemcpy(da, a.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    cudaMemcpy(db, b.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    add<<<(n + 255) / 256, 256>>>(da, db, dc, n);
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        printf("vecadd: kernel: %s\n", cudaGetErrorString(e));
        return 3;
    }
    cudaMemcpy(c.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost);
    int bad = 0;
    for (int i = 0; i < n; i++)
        bad += c[i] != float(3 * i);
    cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    printf("vecadd: %d of %d sums wrong on %s (sm_%d%d)\n", bad, n, p.name, p.major, p.minor);
    return bad != 0;
}
